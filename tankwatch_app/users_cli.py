"""``tankwatch user add/list/remove``: dashboard users in the site's SQL database; every change is audited."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from tankwatch.site import Role

user_app = typer.Typer(no_args_is_help=True, help="Dashboard users: add, list, remove (audited)")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Site file; its storage names the database")]
DbOption = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL (default: the site's sql_url or data_dir)")]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Folder of the SQLite database")]


def open_database(config: Path | None, db: str | None, data_dir: Path | None, *, migrate: bool = False):  # noqa: ANN201
    """The SQL engine of the database the options name, and the site's security settings (defaults without one);
    ``migrate`` first brings the database to the newest schema, as the stages do on start-up, so that a store
    never creates a table of its own in a database the migrations have not made."""
    from tankwatch.config import SiteError, load_site
    from tankwatch.site import SecuritySettings
    from tankwatch.stores.events import make_engine, sqlite_url

    file = None
    if config is not None:
        try:
            file = load_site(config).file
        except SiteError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    storage = file.storage if file else None
    if db is None:
        if storage is not None and storage.sql_url and data_dir is None:
            db = storage.sql_url
        else:
            db = sqlite_url(data_dir or Path(storage.data_dir if storage else "data"))
    if migrate:
        from tankwatch.migrations import upgrade

        upgrade(db)
    return make_engine(db), file.security if file else SecuritySettings()


def open_journal(engine, security, key_file: Path | None = None):  # noqa: ANN001, ANN201 - Engine, settings
    """The audit journal with its key (``key_file``, else TANKWATCH_AUDIT_KEY or the configured key file); exit 2
    saying what to set when there is none."""
    from tankwatch.audit_key import AuditKeyError, load_audit_key, read_key_file
    from tankwatch.stores.audit import AuditJournal, AuditSchemaError

    try:
        key = read_key_file(key_file) if key_file is not None else load_audit_key(security)
        return AuditJournal(engine, key=key)
    except (AuditKeyError, AuditSchemaError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _stores(config: Path | None, db: str | None, data_dir: Path | None):  # noqa: ANN202 - (UserStore, AuditJournal)
    """The user store and audit journal of the database the options name."""
    from tankwatch.stores.users import UserStore

    engine, security = open_database(config, db, data_dir, migrate=True)
    return UserStore(engine), open_journal(engine, security)


def _actor() -> str:
    """Who ran the command, for the audit journal."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _now_ms() -> int:
    from tankwatch.clock import SystemClock

    return SystemClock().now_ms()


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ``user`` command group."""
    app.add_typer(user_app, name="user")


@user_app.command("add")
def add(
    login: Annotated[str, typer.Argument(help="Login name")],
    role: Annotated[Role, typer.Option(help="What the user is; the scope must fit (e.g. operators: --enterprise)")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the login)")] = None,
    enterprise: Annotated[list[str] | None, typer.Option(help="Enterprise id in scope (repeatable)")] = None,
    park: Annotated[str | None, typer.Option(help="Park id in scope")] = None,
    county: Annotated[str | None, typer.Option(help="County name in scope")] = None,
    password_env: Annotated[
        str | None, typer.Option(help="Read the password from this environment variable (default: prompt)")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Overwrite an existing user")] = False,
    config: ConfigOption = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a user scoped to enterprises, a park or a county."""
    from pydantic import ValidationError

    from tankwatch.site import UserScope
    from tankwatch.stores.users import UserError

    try:
        scope = UserScope(enterprises=enterprise or None, park=park, county=county)
    except ValidationError as exc:
        typer.echo(f"scope: {exc.errors()[0]['msg']} (give --enterprise, --park or --county)", err=True)
        raise typer.Exit(2) from None
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            typer.echo(f"environment variable {password_env} is not set", err=True)
            raise typer.Exit(2)
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    users, journal = _stores(config, db, data_dir)
    if config is not None and scope.enterprises:
        from tankwatch.config import load_site

        unknown = sorted(set(scope.enterprises) - {e.id for e in load_site(config).enterprises})
        if unknown:
            typer.echo(f"--enterprise: unknown enterprise ids {unknown}", err=True)
            raise typer.Exit(2)
    now = _now_ms()
    try:
        user = users.add(login, name or login, role, scope, password, now_ms=now, replace=replace)
    except UserError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    journal.record(
        actor=_actor(),
        action="user.replace" if replace else "user.add",
        target_kind="user",
        target_id=user.login,
        remote="local",
        ts_ms=now,
        detail={"name": user.name, "role": user.role.value, "scope": scope.model_dump(exclude_none=True)},
    )
    typer.echo(f"added {user.login} ({user.role.value}, {_scope_text(user.scope)})")


@user_app.command("list")
def list_users(config: ConfigOption = None, db: DbOption = None, data_dir: DataDirOption = None) -> None:
    """Show every user: login, role, scope, name."""
    from tankwatch.stores.users import UserStore

    users = UserStore(open_database(config, db, data_dir, migrate=True)[0])
    for u in users.list():
        flag = " (disabled)" if u.disabled else ""
        typer.echo(f"{u.login}\t{u.role.value}\t{_scope_text(u.scope)}\t{u.name}{flag}")


@user_app.command("remove")
def remove(
    login: Annotated[str, typer.Argument(help="Login name")],
    config: ConfigOption = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Delete a user; their tokens stop working at once."""
    users, journal = _stores(config, db, data_dir)
    if not users.remove(login):
        typer.echo(f"no user {login!r}", err=True)
        raise typer.Exit(1)
    journal.record(
        actor=_actor(), action="user.remove", target_kind="user", target_id=login, remote="local", ts_ms=_now_ms()
    )
    typer.echo(f"removed {login}")


def _scope_text(scope) -> str:  # noqa: ANN001 - tankwatch.site.UserScope
    if scope.enterprises is not None:
        return "enterprises=" + ",".join(scope.enterprises)
    return f"park={scope.park}" if scope.park is not None else f"county={scope.county}"
