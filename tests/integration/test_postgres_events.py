"""The SQL event store on the local PostgreSQL (a database made for this session), and the schema migrations:
run on start-up, concurrent starts serialised, pre-migration databases adopted, and no drift from the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from bench.services import PostgresDatabase
from tankwatch import migrations
from tankwatch.records import AlarmAction, AlarmEvent
from tankwatch.stores.events import EventStore

T0 = 1_714_550_400_000
REPO = Path(__file__).resolve().parents[2]


def event(i: int, action: AlarmAction = AlarmAction.RAISED, occurrence: str = "occ1") -> AlarmEvent:
    return AlarmEvent(f"ev{i}", occurrence, "T101-LT", "HH", action, T0 + i, "high", "E1", "HS1",
                      float("nan") if i == 2 else 95.5, 90.0, "张三" if action is AlarmAction.ACKNOWLEDGED else None,
                      "液位高高")


def drift(url: str) -> list:
    """Differences between the migrated schema and the models' tables."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            # all models at once: compared one MetaData at a time, each would call the others' tables extra
            return [d for d in compare_metadata(context, migrations.target_metadata())  # type: ignore[arg-type]
                    if not (d[0] == "remove_table" and d[1].name == "alembic_version")]
    finally:
        engine.dispose()


def test_event_store_on_postgresql_deduplicates_and_tracks_occurrences(postgres_url: str) -> None:
    assert migrations.upgrade(postgres_url) == migrations.head()
    store = EventStore(postgres_url)
    try:
        assert store.add([event(1), event(2, occurrence="occ2"), event(1)]) == 2  # NaN value stored as NULL
        assert store.add([event(1), event(3, AlarmAction.ACKNOWLEDGED)]) == 1  # ev1 redelivered: ignored
        assert store.add([event(4, AlarmAction.CLEARED)]) == 1
        assert store.add([event(4, AlarmAction.CLEARED)]) == 0
        occurrences = {o["occurrence_id"]: o for o in store.alarms("all")}
        first = occurrences["occ1"]
        assert (first["state"], first["acknowledged"], first["cleared_ms"]) == ("cleared", True, T0 + 4)
        assert occurrences["occ2"]["value"] is None
        assert [e["id"] for e in store.events()] == ["ev1", "ev2", "ev3", "ev4"]
        assert store.events()[2]["user"] == "张三" and store.events()[0]["note"] == "液位高高"
        assert [o["occurrence_id"] for o in store.alarms("active")] == ["occ2"]
    finally:
        store.close()


def test_migrations_leave_no_drift_on_postgresql_and_sqlite(postgres_url: str, tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path / 'm.db'}"
    for url in (postgres_url, sqlite):
        migrations.upgrade(url)
        assert migrations.current(url) == migrations.head()
        assert drift(url) == [], (
            "the stores' tables differ from the migrations: run `tankwatch db revision -m \"...\"`")


def test_concurrent_start_ups_migrate_once() -> None:
    database = PostgresDatabase()
    try:
        code = f"from tankwatch.migrations import upgrade; print(upgrade({database.url!r}))"
        starts = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for _ in range(3)]
        results = [p.communicate(timeout=120) for p in starts]
        assert [p.returncode for p in starts] == [0, 0, 0], [err[-800:] for _, err in results]
        assert [out.strip() for out, _ in results] == [migrations.head()] * 3
        assert migrations.current(database.url) == migrations.head()
    finally:
        database.drop()


def test_a_database_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    # The tables as releases without migrations made them (those of the first revision), with no version table.
    migrations.upgrade(url, migrations.BASELINE)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    engine.dispose()
    assert migrations.current(url) is None
    assert migrations.upgrade(url) == migrations.head()
    engine = create_engine(url)
    assert {"alarm_events", "alarm_occurrences", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()
