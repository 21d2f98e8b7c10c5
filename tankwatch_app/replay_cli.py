"""Commands: record, replay, scenario list/run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

SpeedOption = Annotated[str, typer.Option("--speed", help="Times real time (1, 10, 0.5) or 'max'")]


def _fail(message: str) -> typer.Exit:
    """Print a one-line error and return the exit to raise."""
    typer.echo(message, err=True)
    return typer.Exit(1)


def _speed(text: str) -> float | None:
    from tankwatch_app.replay import parse_speed

    try:
        return parse_speed(text)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _site(path: Path):
    from tankwatch.config import SiteError, load_site

    try:
        return load_site(path)
    except SiteError as exc:
        raise _fail(str(exc)) from None


def _write_events(path: Path, events) -> None:
    """One JSON object per line, in event order."""
    with path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")


def _timeline(events, start_ms: int) -> None:
    for e in events:
        note = f" [{e.note}]" if e.note else ""
        value = "" if e.value is None else f" value={e.value:.4g}"
        typer.echo(
            f"{(e.ts_ms - start_ms) / 1000:8.1f} s  {e.sensor_id:<12} {e.condition:<7} {e.action!s:<9} "
            f"{e.priority:<8}{value}{note}"
        )


def _grade_timeline(grades, start_ms: int) -> None:
    """One line per grade change: time, subject, colour and how many reasons made it so."""
    for g in grades:
        reasons = f" ({len(g.reasons)} reasons)" if len(g.reasons) > 1 else ""
        typer.echo(f"{(g.ts_ms - start_ms) / 1000:8.1f} s  grade {g.subject_id:<6} {g.colour!s:<7}{reasons}")


def _routine_timeline(warnings, classes, start_ms: int) -> None:
    """One line per warning the regulator got and per supervision class change, at scenario day and time."""
    from tankwatch_app.routine_scenario import days_of

    rows = [(w.ts_ms, f"warning {w.kind:<24} {w.enterprise_id} {w.source_id}") for w in warnings]
    rows += [(c.ts_ms, f"class   {c.cls:<24} {c.enterprise_id} ({', '.join(c.rules) or 'no rule'})") for c in classes]
    for ts_ms, text in sorted(rows, key=lambda r: r[0]):
        typer.echo(f"{days_of(ts_ms, start_ms)}  {text}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:  # noqa: ARG001 - no benchmarks here
    """Add record, replay and scenario to the CLI."""
    scenario_app = typer.Typer(no_args_is_help=True, help="Simulated scenarios with golden alarm timelines")
    app.add_typer(scenario_app, name="scenario")

    @app.command("record")
    def record_cmd(
        config: Annotated[Path, typer.Option("--config", "-c", help="Site file (YAML)")],
        duration: Annotated[float, typer.Option("--duration", help="Seconds to record")],
        out: Annotated[Path, typer.Option("--out", help="Feed file to write (Parquet)")],
    ) -> None:
        """Record the raw reading stream of the site's live adapters (quality, device time) into a feed."""
        import asyncio
        import logging

        from tankwatch_app.replay import record

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the adapters report failures as states
        site = _site(config)
        if not duration > 0:
            raise _fail(f"--duration must be positive, got {duration}")
        info = asyncio.run(record(site, out, duration))
        typer.echo(f"{info.path}: {info.rows} readings of park {info.park_id} in {duration:g} s")

    @app.command("replay")
    def replay_cmd(
        feed: Annotated[Path, typer.Argument(help="Feed file (Parquet) from `tankwatch record` or a scenario")],
        config: Annotated[Path, typer.Option("--config", "-c", help="Site file (YAML)")],
        speed: SpeedOption = "max",
        alarms_out: Annotated[Path | None, typer.Option("--alarms-out", help="Write alarm events (JSON lines)")] = None,
    ) -> None:
        """Replay a feed through the alarm pipeline on a driven clock; the same events at every speed."""
        from rich.console import Console

        from tankwatch.feed import FeedError, read_info
        from tankwatch_app.replay import replay_feed

        site = _site(config)
        factor = _speed(speed)
        try:
            info = read_info(feed)
        except FeedError as exc:
            raise _fail(str(exc)) from None
        console = Console(stderr=True)
        try:
            if console.is_terminal:
                result = _replay_with_progress(console, feed, site, factor, info)
            else:
                result = replay_feed(feed, site, speed=factor)
        except FeedError as exc:
            raise _fail(str(exc)) from None
        if alarms_out is not None:
            _write_events(alarms_out, result.events)
        raised = sum(1 for e in result.events if str(e.action) == "raised")
        typer.echo(
            f"{feed}: {result.readings} readings over {result.feed_span_s:g} s of feed time in {result.wall_s:.2f} s "
            f"({result.speedup:.0f}× real time); {len(result.events)} alarm events ({raised} raised)"
        )

    @scenario_app.command("list")
    def scenario_list() -> None:
        """Bundled scenarios: the name first on each line, then the description."""
        from simulators.scenario import ScenarioError, load_scenario, scenario_names

        for name in scenario_names():
            try:
                description = load_scenario(name).description or ""
            except ScenarioError as exc:
                description = f"(invalid: {exc})"
            typer.echo(f"{name}\t{description}")

    @scenario_app.command("run")
    def scenario_run(
        name: Annotated[str, typer.Argument(help="Bundled scenario name or scenario file")],
        speed: SpeedOption = "max",
        check: Annotated[bool, typer.Option("--check", help="Exit 1 with a diff on any departure")] = False,
        duration: Annotated[float | None, typer.Option(help="Scenario seconds to run (default: its own)")] = None,
        config: Annotated[Path | None, typer.Option("--config", "-c", help="Site file (default: its own)")] = None,
        golden: Annotated[Path | None, typer.Option(help="Golden timeline (default: the bundled one)")] = None,
        alarms_out: Annotated[Path | None, typer.Option("--alarms-out", help="Write alarm events (JSON lines)")] = None,
        feed_out: Annotated[Path | None, typer.Option("--feed-out", help="Record the raw stream (max speed)")] = None,
        bless: Annotated[Path | None, typer.Option(help="Write a draft golden timeline from this run")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No event listing")] = False,
    ) -> None:
        """Run a scenario through the platform: max speed without sockets, or N× through Modbus TCP and MQTT."""
        import logging

        from simulators.golden import draft_golden
        from simulators.scenario import ScenarioError
        from tankwatch.config import SiteError
        from tankwatch_app.replay import check_run, run_scenario

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        factor = _speed(speed)
        if factor is not None:  # paho reports every reconnect attempt of a deliberate outage as an error
            logging.getLogger("simulators.mqtt_publisher").setLevel(logging.CRITICAL)
        if duration is not None and not duration > 0:
            raise _fail(f"--duration must be positive, got {duration}")
        try:
            scenario, run = run_scenario(
                name, speed=factor, duration_s=duration, config=config, feed_out=feed_out, say=typer.echo
            )
        except (ScenarioError, SiteError, ValueError) as exc:
            raise _fail(str(exc)) from None
        if not quiet:
            _timeline(run.events, run.start_ms)
            _grade_timeline(run.grades, run.start_ms)
            _routine_timeline(run.warnings, run.classes, run.start_ms)
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(run.rejected.items())) or "none"
        path = "max speed, no sockets" if factor is None else f"{factor:g}× through Modbus TCP and MQTT"
        graded = f", {len(run.grades)} grade changes" if run.graded else ""
        if run.routines:
            graded += (f", {len(run.warnings)} warnings, {len(run.classes)} class changes, "
                       f"{len(run.bulletins)} bulletins")
        typer.echo(
            f"scenario {scenario.name}: {run.ran_s:g} s ({path}), {run.readings} readings, "
            f"{len(run.events)} alarm events{graded}; rejected: {rejected}"
        )
        if alarms_out is not None:
            _write_events(alarms_out, run.events)
        if bless is not None:
            draft = draft_golden(scenario.name, run.events, run.start_ms, run.grades if run.graded else None,
                                 routines=(run.warnings, run.classes, run.bulletins) if run.routines else None)
            bless.write_text(draft, encoding="utf-8")
            typer.echo(f"draft golden timeline written to {bless}: review every window before using it")
        if check:
            try:
                result = check_run(scenario.name, run, golden)
            except ScenarioError as exc:
                raise _fail(str(exc)) from None
            typer.echo(result.report())
            if not result.ok:
                raise typer.Exit(1)


def _replay_with_progress(console, feed: Path, site, speed: float | None, info):
    """replay_feed with a rich progress bar (rows, rate, ETA)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from tankwatch_app.replay import replay_feed

    columns = (
        TextColumn("[bold]replay"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("replay", total=info.rows or None, rate="")

        def on_window(rows: int, end_ms: int) -> None:
            speed_now = progress.tasks[0].speed
            progress.update(task, advance=rows, rate=f"{speed_now:,.0f} readings/s" if speed_now else "")

        return replay_feed(feed, site, speed=speed, on_window=on_window)
