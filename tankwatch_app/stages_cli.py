"""Distributed-mode commands: ``tankwatch run [STAGE]`` and ``tankwatch db …``.

Register with ``register(app, bench_app)``; ``python -m tankwatch_app.stages_cli …`` runs them without
tankwatch_app.cli.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

STAGE_HELP = "Stage to run: all (default), ingest, alarms, historian, dashboard, uplink, receiver"


def _load(path: Path):  # noqa: ANN202 - returns tankwatch.config.Site, imported lazily
    """Load a site file or exit 1 with its one-line error."""
    from tankwatch.config import SiteError, load_site

    try:
        return load_site(path)
    except SiteError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def register(app: typer.Typer, bench_app: typer.Typer) -> None:  # noqa: ARG001 - no benchmarks here
    """Add ``run`` and ``db`` to the CLI."""

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
            help="Kafka group session timeout, s: how soon a dead member's partitions move (6: Kafka's least by "
                 "default)")] = 6.0,
        metrics_port: Annotated[int | None, typer.Option(
            help="Serve this process's Prometheus counters on http://METRICS_HOST:PORT/metrics (one port per stage)",
            envvar="TANKWATCH_METRICS_PORT")] = None,
        metrics_host: Annotated[str, typer.Option(help="Bind address of --metrics-port")] = "127.0.0.1",
        modbus_port: Annotated[int | None, typer.Option(
            help="Read every Modbus device on this port instead of the site file's (a second instance, the demo)")
        ] = None,
        mqtt_port: Annotated[int | None, typer.Option(
            help="Use this port of every device's MQTT broker instead of the site file's")] = None,
        demo: Annotated[bool, typer.Option(
            "--demo", help="The dashboard signs in the site file's demo users (plain-text passwords) and keeps its "
                           "audit key in the data folder")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    ) -> None:
        """Run the pipeline, or one stage of it against Kafka (ingest | alarms | historian | dashboard)."""
        from tankwatch.config import SiteError
        from tankwatch.gc_tuning import tune_for_streaming
        from tankwatch_app.endpoints import override_endpoints
        from tankwatch_app.logs import configure_logging
        from tankwatch_app.runtime import StageError, apply_environment, run_stage, until_signalled

        configure_logging(verbose)
        try:
            site = override_endpoints(apply_environment(_load(config)), modbus_port=modbus_port, mqtt_port=mqtt_port)
        except SiteError as exc:
            typer.echo(f"tankwatch run: settings from the environment: {exc}", err=True)
            raise typer.Exit(1) from None
        tune_for_streaming()
        try:
            asyncio.run(until_signalled(run_stage(
                stage, site, bus_url=bus, host=host, port=port, data_dir=data_dir, duration_s=duration,
                session_timeout_s=session_timeout, metrics_port=metrics_port, metrics_host=metrics_host,
                demo=demo, say=typer.echo)))
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


def main() -> None:
    """Entry point for ``python -m tankwatch_app.stages_cli`` (before tankwatch_app.cli registers this module)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True)
    register(app, typer.Typer())
    app()


if __name__ == "__main__":
    main()
