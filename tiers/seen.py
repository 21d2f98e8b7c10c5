"""The receiver's memory of accepted dataIds, in SQL, so that a restart never accepts a message twice."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

metadata = MetaData()

received = Table(
    "uplink_received",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("data_id", String(64), primary_key=True),
    Column("service", String(32), nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Index("ix_uplink_received_ms", "received_ms"),
)


class SeenStore:
    """dataIds accepted per sender (appId), kept for a retention period longer than any sender's backlog."""

    def __init__(self, engine: Engine) -> None:
        """Use ``engine`` as it is configured (e.g. the instance's SQL store); a remembered dataId is as durable as
        a commit there."""
        self.engine = engine
        metadata.create_all(engine, tables=[received])

    def seen(self, app_id: str, data_id: str) -> bool:
        """Whether this sender's dataId was accepted before."""
        query = select(received.c.data_id).where(received.c.app_id == app_id, received.c.data_id == data_id)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def remember(self, app_id: str, data_id: str, service: str, now_ms: int) -> bool:
        """Record an accepted dataId; False when it was already there."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(received).values(app_id=app_id, data_id=data_id, service=service,
                                                     received_ms=now_ms))
        except IntegrityError:
            return False
        return True

    def forget_before(self, cutoff_ms: int) -> int:
        """Drop dataIds accepted before ``cutoff_ms``; returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(delete(received).where(received.c.received_ms < cutoff_ms)).rowcount
