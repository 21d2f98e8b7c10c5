"""Alembic environment: one connection, all migrations in one transaction, serialised on PostgreSQL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from tankwatch.migrations import target_metadata

LOCK_KEY = 7_262_777  # pg_advisory_xact_lock key: stages starting together migrate one after the other


def run() -> None:
    """Run the migrations online (the only mode tankwatch uses)."""
    url = context.config.attributes["url"]
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata(),
                render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
                compare_type=True,
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    connection.execute(text(f"SELECT pg_advisory_xact_lock({LOCK_KEY})"))
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("tankwatch migrations run online only: tankwatch db upgrade --url URL")
run()
