"""``tankwatch bench peers``: the same MQTT feed through Node-RED and through tankwatch, in one run."""

from __future__ import annotations

import json
from typing import Annotated

import typer

ALLOWED_SIZES = (50, 200, 1000)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``bench peers`` to the CLI."""

    @bench_app.command("peers")
    def peers(
        points_per_message: Annotated[int, typer.Option(help="Points per MQTT message: 50, 200 or 1000")] = 200,
        points: Annotated[int, typer.Option(min=1, help="Points in the feed")] = 3_000_000,
        sensors: Annotated[int, typer.Option(min=1, help="Sensors in the feed")] = 10_000,
        seed: Annotated[int, typer.Option(help="Feed random seed")] = 0,
        timeout: Annotated[float, typer.Option(help="Seconds each system may take")] = 600.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON summary")] = False,
    ) -> None:
        """Node-RED 4 (npm, scratch folder) vs tankwatch (MQTT ingest + alarm core): points/s and their ratio.

        Exit 1 when either system missed a point or the limit-transition counts disagree.
        """
        from bench.peers.run import run_peers

        if points_per_message not in ALLOWED_SIZES:
            raise typer.BadParameter(f"must be one of {', '.join(map(str, ALLOWED_SIZES))}, got {points_per_message}",
                                     param_hint="--points-per-message")
        log = (lambda _msg: None) if as_json else (lambda msg: typer.echo(msg, err=True))
        try:
            result = run_peers(points_per_message, points, sensors, seed, timeout, log=log)
        except (RuntimeError, TimeoutError, OSError) as exc:
            typer.echo(f"bench peers failed: {exc}", err=True)
            raise typer.Exit(2) from None
        problems = result.problems()
        if as_json:
            typer.echo(json.dumps(result.as_json()))
        else:
            tw, nr = result.tankwatch, result.node_red
            typer.echo(f"{result.points} points, {result.sensors} sensors, {points_per_message} points/message, "
                       f"{result.expected_transitions} limit transitions in the feed")
            typer.echo(f"  Node-RED   {nr.points_per_s / 1e6:6.2f} M points/s  ({nr.points} points, "
                       f"{nr.transitions} transitions, {nr.seconds:.2f} s; "
                       f"publisher done at {nr.publish_seconds:.2f} s)")
            typer.echo(f"  tankwatch  {tw.points_per_s / 1e6:6.2f} M points/s  ({tw.points} points, "
                       f"{tw.transitions} transitions, {tw.seconds:.2f} s; "
                       f"publisher done at {tw.publish_seconds:.2f} s; "
                       f"{tw.evaluate_seconds or 0:.2f} s inside the alarm core)")
            typer.echo(f"  ratio tankwatch / Node-RED: {result.ratio:.2f}")
        for problem in problems:
            typer.echo(f"MISMATCH: {problem}", err=True)
        if problems:
            raise typer.Exit(1)


def main() -> None:
    """``python -m bench.peers_cli …``: the command without the tankwatch CLI (used by ``make bench-peers``)."""
    from tankwatch_app.cli import app, bench_app

    register(app, bench_app)
    app()


if __name__ == "__main__":
    main()
