"""``tankwatch hazard`` and ``tankwatch compliance``: GB 18218 levels and clause-28 checks of a site file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Site file (YAML)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Folder holding timeseries.db: adds the live assessment / online checks from its latest values"),
]


def _site(config: Path):  # noqa: ANN202 - tankwatch.config.Site, imported lazily
    from tankwatch.config import SiteError, load_site

    try:
        return load_site(config)
    except SiteError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _latest(site, data_dir: Path | None):  # noqa: ANN001, ANN202 - Site → ReadingBatch | None
    """Latest readings from a time-series file, if one is given."""
    if data_dir is None:
        return None
    from tankwatch.stores.timeseries import TimeSeriesStore

    path = data_dir / "timeseries.db"
    if not path.exists():
        typer.echo(f"{path}: no time-series file", err=True)
        raise typer.Exit(1)
    store = TimeSeriesStore(path, [s.sensor.id for s in site.sensors], site.file.storage.retention_days)
    try:
        return store.latest()
    finally:
        store.close()


def _level(a: dict) -> str:
    return f"{a['level_zh']}" if a["is_major"] else "非重大 / not major"


def hazard_table(rows: list[dict]):  # noqa: ANN201 - a rich Table, imported lazily
    """Per source: regulatory S, R, level and (when readings are known) the live ones, in one table."""
    from rich.table import Table

    table = Table(
        title="GB 18218-2018 重大危险源辨识与分级 / identification and grading",
        caption="法定 = 设计最大量 (§4.2.2) / regulatory = design maximum quantities; "
        "实时 = 液位×密度存量指标 / live = level × density indicator (* a tank without a good level counts at "
        "its design maximum)",
    )
    columns = (
        "source", "名称 / name", "α", "S 法定", "R 法定", "级别 法定 / level", "S 实时", "R 实时", "级别 实时 / live"
    )
    for col in columns:
        table.add_column(col, justify="right" if col[0] in "αSR" else "left")
    for row in rows:
        reg, live = row["regulatory"], row["live"]
        cells = [row["source_id"], row["name"], f"{reg['alpha']:g}", f"{reg['s']:.3f}", f"{reg['r']:.2f}", _level(reg)]
        if live is None:
            cells += ["—", "—", "—"]
        else:
            cells += [f"{live['s']:.3f}", f"{live['r']:.2f}", _level(live) + ("" if live["complete"] else " *")]
        table.add_row(*cells)
    return table


def register(app: typer.Typer, bench_app: typer.Typer) -> None:  # noqa: ARG001 - no benchmarks here
    """Add ``hazard`` and ``compliance`` to the CLI."""

    @app.command("hazard")
    def hazard(config: ConfigOption, json_out: JsonOption = False, data_dir: DataDirOption = None) -> None:
        """GB 18218-2018 per hazard source: regulatory (design maximum) and live (level × density) S, R, level."""
        from alarms.hazard import UnknownChemical, reference, site_hazards

        site = _site(config)
        try:
            rows = site_hazards(site, _latest(site, data_dir))
        except UnknownChemical as exc:
            typer.echo(f"{config}: {exc}", err=True)
            raise typer.Exit(1) from None
        if json_out:
            typer.echo(json.dumps({"reference": reference().version, "sources": rows}, ensure_ascii=False, indent=2))
        else:
            from rich.console import Console

            Console(width=160).print(hazard_table(rows))

    @app.command("compliance")
    def compliance_cmd(config: ConfigOption, json_out: JsonOption = False, data_dir: DataDirOption = None) -> None:
        """Clause 28 (Nantong/Huai'an): T/L/P acquisition, gas detection, ESD per major storage unit; exit 2 on gaps."""
        from alarms.compliance import check_site
        from alarms.hazard import UnknownChemical

        site = _site(config)
        latest = _latest(site, data_dir)
        now_ms = int(time.time() * 1000) if latest is not None else None
        try:
            results = check_site(site, latest, now_ms)
        except UnknownChemical as exc:
            typer.echo(f"{config}: {exc}", err=True)
            raise typer.Exit(1) from None
        if json_out:
            typer.echo(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
        else:
            for r in results:
                if not r.applicable:
                    typer.echo(f"{r.source_id}: 不适用 / not applicable ({r.not_applicable_reason})")
                elif r.compliant:
                    checked = "" if r.online_checked else " (配置检查 / configuration only)"
                    typer.echo(f"{r.source_id}: 合规 / compliant{checked}")
                else:
                    typer.echo(f"{r.source_id}: {len(r.gaps)} 项缺口 / gaps")
                    for g in r.gaps:
                        typer.echo(f"  - {g.text_zh} / {g.text_en}")
        if any(not r.compliant for r in results):
            raise typer.Exit(2)
