"""``tankwatch bench mqtt-burst``: single-reading QoS 1 messages through Mosquitto (defaults vs deployed settings)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``bench mqtt-burst`` to the CLI."""

    @bench_app.command("mqtt-burst")
    def mqtt_burst(
        messages: Annotated[int, typer.Option(min=1, help="Messages (one reading each) to publish")] = 300_000,
        detectors: Annotated[int, typer.Option(min=1, help="Gas detectors, publishing in turn")] = 10_000,
        rate: Annotated[float, typer.Option(min=0, help="Messages per second (0: as fast as possible)")] = 30_000,
        timeout: Annotated[float, typer.Option(help="Seconds each run may take")] = 300.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON summary")] = False,
    ) -> None:
        """Mosquitto defaults (baseline) vs deploy/mosquitto/mosquitto.conf: received, lost, dropped by the broker,
        missing by the detectors' counters, readings/s. Exit 1 when the deployed settings lost a message."""
        from bench.mqtt_burst import run_mqtt_burst

        log = (lambda _msg: None) if as_json else (lambda msg: typer.echo(msg, err=True))
        try:
            runs = run_mqtt_burst(detectors, messages, rate or None, timeout, log)
        except (RuntimeError, TimeoutError, OSError) as exc:
            typer.echo(f"bench mqtt-burst failed: {exc}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps({"messages": messages, "detectors": detectors, "rate": rate,
                                   "runs": [r.as_json() for r in runs]}))
        else:
            typer.echo(f"{messages} single-reading QoS 1 messages from {detectors} detectors, "
                       f"{f'{rate:,.0f}/s offered' if rate else 'as fast as possible'}")
            for r in runs:
                typer.echo(f"  {r.broker:9} received {r.received:>8} ({r.received / r.sent:6.1%}), lost {r.lost:>7}; "
                           f"broker dropped {r.broker_dropped:>7}, counter gaps {r.sequence_gaps:>7}; "
                           f"{r.received_per_s:>8,.0f} readings/s "
                           f"(publish {r.publish_s:.2f} s, ingest {r.ingest_s:.2f} s)")
        if runs[-1].lost:
            typer.echo(f"LOSS: the deployed settings lost {runs[-1].lost} messages", err=True)
            raise typer.Exit(1)
