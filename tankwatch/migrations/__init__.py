"""Schema migrations (Alembic) for the SQL stores, run on start-up; SQLite and PostgreSQL alike.

``upgrade(url)`` brings a database to the newest revision. A database that the stores created before migrations
existed (tables present, no ``alembic_version``) is stamped at the first revision, then upgraded.
New revision after a table change: ``tankwatch db revision -m "what changed"`` (see :func:`make_revision`).
"""

from __future__ import annotations

import importlib
import logging
import tempfile
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, inspect

from tankwatch.migrations.lock import migrating

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BASELINE = "0001"  # the revision whose tables the stores' create_all made before migrations existed

_ALEMBIC = threading.Lock()  # Alembic's context is process-global: one migration run at a time per process

# Modules whose tables the migrations cover: importing them registers their tables on their ``metadata`` (most
# share ``tankwatch.stores.events.metadata``). A module that does not exist (yet) is skipped. A new module with
# tables goes here; then generate the revision that creates them: ``tankwatch db revision -m "..."``.
MODEL_MODULES: tuple[str, ...] = (
    "tankwatch.stores.events",
    "tankwatch.stores.users",
    "tankwatch.stores.audit",
    "tankwatch.stores.uplink",
    "alarms.escalation",
    "alarms.notify",
    "alarms.commitments",
    "alarms.duty",
    "alarms.baobao",
    "alarms.patrols",
    "alarms.supervision",
    "alarms.bulletins",
)


def target_metadata() -> list[MetaData]:
    """The distinct MetaData objects of every model module present."""
    found: list[MetaData] = []
    for name in MODEL_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        metadata = getattr(module, "metadata", None)
        if isinstance(metadata, MetaData) and all(metadata is not m for m in found):
            found.append(metadata)
    return found


def config(url: str) -> Config:
    """An Alembic configuration for ``url`` without an ini file (the URL is never %-interpolated)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    cfg.attributes["url"] = url
    return cfg


def head() -> str:
    """The newest revision id."""
    return ScriptDirectory.from_config(config("sqlite://")).get_current_head() or ""


def current(url: str) -> str | None:
    """The revision a database is at (None: never migrated)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> str:
    """Migrate ``url`` to ``revision`` (one process at a time: ``lock.migrating``); returns the revision it is at
    afterwards."""
    cfg = config(url)
    with migrating(url), _ALEMBIC:
        engine = create_engine(url)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        if "alembic_version" not in tables and "alarm_events" in tables:
            log.warning("database %s predates migrations: stamping it at %s", _safe(url), BASELINE)
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, revision)
    return current(url) or ""


def make_revision(message: str) -> Path:
    """Autogenerate the next revision from the difference between ``target_metadata()`` and the newest one.

    The comparison runs against a scratch SQLite database migrated to the current head, so no server is needed.
    Returns the new file; read it before committing (Alembic cannot see renames, only drops and adds).
    """
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'scratch.db'}"
        cfg = config(url)
        with _ALEMBIC:
            command.upgrade(cfg, "head")
            next_id = f"{int(head() or '0') + 1:04d}"
            script = command.revision(cfg, message=message, autogenerate=True, rev_id=next_id)
    path = Path(script.path) if script is not None and not isinstance(script, list) else None
    if path is None:
        raise RuntimeError("alembic made no revision")
    return path


def _safe(url: str) -> str:
    """A URL with its password hidden, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
