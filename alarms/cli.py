"""Alarm-core commands: ``tankwatch bench alarm-core``."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the alarm-core commands to the CLI."""

    @bench_app.command("alarm-core")
    def bench_alarm_core(
        sensors: Annotated[int, typer.Option(min=42, help="sensors in the park (whole sources of 42)")] = 10_000,
        readings: Annotated[int, typer.Option(min=1, help="readings in the stream")] = 5_000_000,
        batch: Annotated[int, typer.Option(min=1, help="readings per evaluated batch")] = 200_000,
        oracle_readings: Annotated[
            int, typer.Option(min=1000, help="about this many readings go to the (slow) oracle")
        ] = 100_000,
        seed: Annotated[int, typer.Option(help="random seed of the synthetic stream")] = 1,
        as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
    ) -> None:
        """Vectorized alarm core vs the per-reading oracle on one synthetic stream: readings/s and ratio."""
        from bench.alarm_core import run_benchmark

        result = run_benchmark(sensors, readings, batch, oracle_readings, seed)
        if as_json:
            keys = ("readings_per_s", "oracle_readings_per_s", "ratio")
            typer.echo(json.dumps({k: round(result[k], 1) for k in keys}))
            return
        typer.echo(
            f"alarm core: {result['readings_per_s'] / 1e6:.2f} M readings/s "
            f"({result['readings']:,} readings, {result['sensors']:,} sensors, batches of {result['batch']:,}, "
            f"{result['events']:,} events, {result['exact_share']:.1%} of readings through the exact pass)"
        )
        typer.echo(
            f"oracle:     {result['oracle_readings_per_s'] / 1e3:.1f} k readings/s "
            f"(on a subsample, per reading: {result['oracle_sample']}; {result['oracle_events']:,} events)"
        )
        typer.echo(f"ratio:      {result['ratio']:.0f}×")
        typer.echo(
            f"per CPU second of this process (the machine may be shared): core "
            f"{result['readings_per_cpu_s'] / 1e6:.2f} M/s, oracle {result['oracle_readings_per_cpu_s'] / 1e3:.1f} k/s"
        )
        agree = "yes" if result["oracle_agrees"] else "NO"
        typer.echo(f"core events equal the oracle's on the subsample: {agree}")
        if not result["oracle_agrees"]:
            raise typer.Exit(1)
