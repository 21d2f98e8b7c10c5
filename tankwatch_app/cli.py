"""The ``tankwatch`` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from tankwatch.config import Site, SiteError, load_site
from tankwatch_app import audit_cli, bench_cli, hazard_cli, replay_cli, stages_cli, users_cli
from tankwatch_app.logs import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help="tankwatch: tank-farm and major-hazard monitoring")
bench_app = typer.Typer(no_args_is_help=True, help="Reproducible benchmarks, each against its baseline in one run")
app.add_typer(bench_app, name="bench")

# Modules that define commands next to the code they drive; each has register(app, bench_app).
COMMAND_MODULES = (
    stages_cli,  # run [stage], db
    replay_cli,  # record, replay, scenario
    hazard_cli,  # hazard, compliance
    bench_cli,  # bench pipeline|historian|replay|peers|mqtt-burst|alarm-core|uplink
    users_cli,  # user add/list/remove
    audit_cli,  # audit verify
)

DISTRIBUTED_STOP_S = 20.0  # after Ctrl-C: every stage's own 9 s, and the broker
DEMO_SITE = Path(__file__).resolve().parent.parent / "deploy" / "sites" / "demo-park.yaml"

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Site file (YAML)")]
PortOption = Annotated[int, typer.Option(help="Dashboard HTTP port on 127.0.0.1")]
DataDirOption = Annotated[Path | None, typer.Option(help="Where stores keep their files (default: the site's)")]


def _load(path: Path) -> Site:
    """Load a site file or exit 1 with its one-line error."""
    try:
        return load_site(path)
    except SiteError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def summary(site: Site) -> str:
    """One line describing a valid site."""
    sources = list(site.sources())
    tanks = list(site.tanks())
    return (
        f"{site.path}: ok — park {site.file.park.id}, {len(site.enterprises)} enterprises, "
        f"{len(sources)} hazard sources, {len(tanks)} tanks, {len(site.sensors)} sensors, "
        f"{len(site.devices)} devices"
    )


@app.command()
def check(file: Annotated[Path, typer.Argument(help="Site file to validate")]) -> None:
    """Validate a site file: exit 0 with a summary, or 1 with FILE:LINE: field: message."""
    typer.echo(summary(_load(file)))


@app.command()
def demo(
    port: PortOption = 8000,
    duration: Annotated[float | None, typer.Option(help="Exit cleanly after this many seconds")] = None,
    config: ConfigOption = DEMO_SITE,
    data_dir: DataDirOption = None,
    modbus_port: Annotated[int | None, typer.Option(help="Serve the simulated Modbus devices on this port")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT broker port (embedded broker if none answers)")] = None,
    scenario: Annotated[str, typer.Option(help="Simulator scenario name or YAML file")] = "demo",
    simulate: Annotated[bool, typer.Option(help="Simulate the site's devices (off: a tier fed from below)")] = True,
    tiers: Annotated[bool, typer.Option(
        help="Enterprise instances uplinking to a park instance uplinking to a county instance, each a process")
    ] = False,
    distributed: Annotated[bool, typer.Option(
        help="A tansu broker and each stage its own process (ingest, two alarm workers, historian, dashboard), "
             "on private ports; <data-dir>/distributed/distributed.json says where (needs the demo-distributed extra)")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a simulated park end to end: simulators → ingest → alarms → stores → dashboard, on 127.0.0.1."""
    from tankwatch.gc_tuning import tune_for_streaming
    from tankwatch_app.endpoints import override_endpoints
    from tankwatch_app.runtime import StageError, data_dir_for, run_demo

    configure_logging(verbose)
    if tiers:
        from tankwatch_app.tiers_demo import run_tiers

        park = _load(config)
        code = run_tiers(park, port=port, duration_s=duration, data_dir=data_dir_for(park, data_dir),
                         scenario=scenario, say=typer.echo)
        raise typer.Exit(code)
    if distributed:
        from tankwatch_app.distributed_demo import run_distributed
        from tankwatch_app.runtime import until_signalled

        park = _load(config)
        try:
            asyncio.run(until_signalled(run_distributed(
                park, port=port, duration_s=duration, data_dir=data_dir_for(park, data_dir), scenario=scenario,
                say=typer.echo, modbus_port=modbus_port, mqtt_port=mqtt_port), deadline_s=DISTRIBUTED_STOP_S))
        except (StageError, RuntimeError) as exc:
            typer.echo(f"tankwatch demo: {exc}", err=True)
            raise typer.Exit(2) from None
        return
    site = override_endpoints(_load(config), modbus_port=modbus_port, mqtt_port=mqtt_port)
    tune_for_streaming()
    try:
        asyncio.run(run_demo(site, port=port, duration_s=duration, data_dir=data_dir, scenario=scenario,
                             say=typer.echo, simulate=simulate))
    except StageError as exc:
        typer.echo(f"tankwatch demo: {exc}", err=True)
        raise typer.Exit(2) from None


for _module in COMMAND_MODULES:
    _module.register(app, bench_app)
