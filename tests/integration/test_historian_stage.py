"""`tankwatch run historian` alone: Kafka readings and events → InfluxDB write path (VictoriaMetrics) and the
event store on PostgreSQL (migrated on start-up); a redelivered event is stored once."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.services import PostgresDatabase, TansuHandle, VictoriaMetricsHandle
from tankwatch import bus as topics
from tankwatch.kafka_bus import KafkaBus
from tankwatch.migrations import head
from tankwatch.records import AlarmAction, AlarmEvent
from tankwatch_app.runtime import apply_environment, run_stage
from tests.integration.test_kafka_bus import FAST_GROUPS, park_doc, wave, write_site


async def test_historian_stage_writes_influx_and_postgresql(
    kafka_broker: TansuHandle, victoria_metrics: VictoriaMetricsHandle, tmp_path: Path
) -> None:
    database = PostgresDatabase()
    doc = park_doc(3, 2)
    doc["storage"] = {"influx": {"url": victoria_metrics.url, "org": "tankwatch", "bucket": "tankwatch",
                                 "token_env": "TW_TEST_INFLUX_TOKEN"}}
    _, site = write_site(doc, tmp_path)
    site = apply_environment(site, {"TANKWATCH_SQL_URL": database.url})
    bus = KafkaBus(kafka_broker.bootstrap, site, **FAST_GROUPS)
    await bus.ensure_topics()
    os.environ["TW_TEST_INFLUX_TOKEN"] = "test-token"
    stage = asyncio.create_task(run_stage("historian", site, bus_url=kafka_broker.url, data_dir=tmp_path,
                                          session_timeout_s=3, say=lambda _m: None))
    sensor = site.sensors[0]
    raised = AlarmEvent("evA", "occA", sensor.sensor.id, "HH", AlarmAction.RAISED, 1_714_550_400_000, "high",
                        sensor.enterprise_id, sensor.source_id, 95.0, 90.0)
    engine = create_engine(database.url)
    try:
        steps = 5
        for k in range(steps):
            await bus.publish(topics.READINGS, wave(site, k))
        await bus.publish(topics.EVENTS, [raised])
        await bus.publish(topics.EVENTS, [raised])  # redelivered

        def stored() -> tuple[int, int]:
            victoria_metrics.flush()
            series = victoria_metrics.export(f'{{__name__="readings_quality",enterprise=~"E[0-2]",'
                                             f'sensor=~"{"|".join(s.sensor.id for s in site.sensors)}"}}')
            points = sum(len(s["values"]) for s in series)
            try:
                with engine.connect() as conn:
                    events = conn.execute(text("SELECT count(*) FROM alarm_events")).scalar_one()
            except Exception:  # noqa: BLE001 - the stage has not migrated the database yet
                events = 0
            return points, events

        def event_series() -> list[dict]:
            """The event's series in the time-series server (SQL and the server are written one after the other)."""
            return victoria_metrics.export(f'{{__name__="alarm_events_value",sensor="{sensor.sensor.id}"}}')

        deadline = time.monotonic() + 60
        while stored() != (steps * len(site.sensors), 1) or not event_series():
            assert not stage.done(), stage.exception()
            assert time.monotonic() < deadline, f"stored {stored()}, event series {event_series()}"
            await asyncio.sleep(0.5)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head()
        [series] = event_series()
        assert len(series["values"]) == 1
    finally:
        stage.cancel()
        await asyncio.gather(stage, return_exceptions=True)
        await bus.close()
        engine.dispose()
        os.environ.pop("TW_TEST_INFLUX_TOKEN", None)
        database.drop()
