"""Distributed-mode commands: ``tankwatch run [STAGE]``, ``tankwatch db …``, ``tankwatch bench pipeline|historian``.

Register with ``register(app, bench_app)``; ``python -m tankwatch_app.stages_cli …`` runs them without
tankwatch_app.cli.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

STAGE_HELP = "Stage to run: all (default), ingest, alarms, historian, dashboard"


def _load(path: Path):  # noqa: ANN202 - returns tankwatch.config.Site, imported lazily
    """Load a site file or exit 1 with its one-line error."""
    from tankwatch.config import SiteError, load_site

    try:
        return load_site(path)
    except SiteError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``run``, ``db`` and the pipeline/historian benchmarks to the CLI."""

    @app.command("run")
    def run(
        stage: Annotated[str, typer.Argument(help=STAGE_HELP)] = "all",
        config: Annotated[Path, typer.Option("--config", "-c", help="Site file (YAML)")] = ...,  # type: ignore[assignment]
        bus: Annotated[str | None, typer.Option(
            help="memory:// or kafka://HOST:PORT[,HOST:PORT] (default: the site's bus.url)",
            envvar="TANKWATCH_BUS")] = None,
        host: Annotated[str, typer.Option(help="Dashboard bind address")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Dashboard HTTP port")] = 8000,
        duration: Annotated[float | None, typer.Option(help="Exit cleanly after this many seconds")] = None,
        data_dir: Annotated[Path | None, typer.Option(help="Where stores keep their files (default: the site's)",
                                                      envvar="TANKWATCH_DATA_DIR")] = None,
        session_timeout: Annotated[float, typer.Option(
            help="Kafka group session timeout, s: how soon a dead member's partitions move")] = 10.0,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    ) -> None:
        """Run the pipeline, or one stage of it against Kafka (ingest | alarms | historian | dashboard)."""
        from tankwatch.config import SiteError
        from tankwatch.gc_tuning import tune_for_streaming
        from tankwatch_app.cli import _logging
        from tankwatch_app.runtime import StageError, apply_environment, run_stage, until_signalled

        _logging(verbose)
        try:
            site = apply_environment(_load(config))
        except SiteError as exc:
            typer.echo(f"tankwatch run: settings from the environment: {exc}", err=True)
            raise typer.Exit(1) from None
        tune_for_streaming()
        try:
            asyncio.run(until_signalled(run_stage(
                stage, site, bus_url=bus, host=host, port=port, data_dir=data_dir, duration_s=duration,
                session_timeout_s=session_timeout, say=typer.echo)))
        except StageError as exc:
            typer.echo(f"tankwatch run: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            pass

    db_app = typer.Typer(no_args_is_help=True, help="SQL schema migrations (Alembic)")
    app.add_typer(db_app, name="db")

    @db_app.command("upgrade")
    def db_upgrade(
        url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the site's storage.sql_url)",
                                                envvar="TANKWATCH_SQL_URL")] = None,
        config: Annotated[Path | None, typer.Option("--config", "-c", help="Site file")] = None,
    ) -> None:
        """Migrate a database to the newest schema (stages do this on start-up too)."""
        from tankwatch.migrations import upgrade

        if url is None:
            if config is None:
                typer.echo("give --url or --config", err=True)
                raise typer.Exit(2)
            site = _load(config)
            from tankwatch.stores.events import sqlite_url
            from tankwatch_app.runtime import data_dir_for

            url = site.file.storage.sql_url or sqlite_url(data_dir_for(site, None))
        typer.echo(f"schema at revision {upgrade(url)}")

    @db_app.command("revision")
    def db_revision(message: Annotated[str, typer.Option("--message", "-m", help="What changed")]) -> None:
        """Generate the next migration from the stores' tables (then read and commit the new file)."""
        from tankwatch.migrations import make_revision

        typer.echo(f"wrote {make_revision(message)}")

    @bench_app.command("pipeline")
    def bench_pipeline(
        bus: Annotated[str, typer.Option(help="memory, kafka (starts tansu) or kafka://HOST:PORT")] = "memory",
        rate: Annotated[float, typer.Option(help="Points/s offered for the latency run")] = 10_000,
        seconds: Annotated[float, typer.Option(help="Length of each run")] = 10.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    ) -> None:
        """MQTT in → alarms → stores: sustained points/s, and publish → websocket alarm latency p50/p99."""
        from bench.pipeline import run_pipeline_bench

        result = asyncio.run(run_pipeline_bench(bus=bus, rate=rate, seconds=seconds,
                                                say=(lambda _m: None) if as_json else typer.echo))
        typer.echo(json.dumps(result) if as_json else _table(result))

    @bench_app.command("historian")
    def bench_historian(
        url: Annotated[str | None, typer.Option(help="Line-protocol server (default: start victoria-metrics)")] = None,
        points: Annotated[int, typer.Option(help="Points to write")] = 500_000,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    ) -> None:
        """Points/s through the historian (line protocol, 5,000-line gzip batches) to an InfluxDB-protocol server."""
        from bench.historian import run_historian_bench

        result = run_historian_bench(url=url, points=points, say=(lambda _m: None) if as_json else typer.echo)
        typer.echo(json.dumps(result) if as_json else _table(result))


def _table(result: dict) -> str:
    """``key: value`` lines."""
    return "\n".join(f"{k}: {v}" for k, v in result.items())


def main() -> None:
    """Entry point for ``python -m tankwatch_app.stages_cli`` (before tankwatch_app.cli registers this module)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True)
    bench_app = typer.Typer(no_args_is_help=True)
    app.add_typer(bench_app, name="bench")
    register(app, bench_app)
    app()


if __name__ == "__main__":
    main()
