"""``tankwatch audit verify``: walk the audit journal's HMAC chain; exit 1 naming the first broken entry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tankwatch_app.users_cli import ConfigOption, DataDirOption, DbOption, open_database, open_journal

audit_app = typer.Typer(no_args_is_help=True, help="The audit journal: verify its chain")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ``audit`` command group."""
    app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify(
    config: ConfigOption = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
    key_file: Annotated[
        Path | None, typer.Option(help="Audit key file (default: TANKWATCH_AUDIT_KEY, or the configured key file)")
    ] = None,
    allow_legacy: Annotated[
        bool, typer.Option(help="Accept the unkeyed entries of a journal begun before the audit key (their count "
                                "is printed; it never grows)")
    ] = False,
) -> None:
    """Check every entry against its predecessor and the audit key: exit 0 when intact, 1 at the first broken one."""
    engine, security = open_database(config, db, data_dir)
    check = open_journal(engine, security, key_file).verify(allow_legacy=allow_legacy)
    legacy = f", {check.legacy} unkeyed from before the audit key" if check.legacy else ""
    if check.ok:
        typer.echo(f"audit journal intact: {check.entries} entries{legacy}")
        return
    typer.echo(
        f"audit journal broken at entry {check.broken_seq}: {check.reason} ({check.entries} entries before it hold)",
        err=True,
    )
    raise typer.Exit(1)
