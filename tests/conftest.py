"""Shared fixtures: test services on 127.0.0.1 (see tests/services.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import (
    DEFAULT_MQTT,
    MosquittoHandle,
    PostgresDatabase,
    TansuHandle,
    VictoriaMetricsHandle,
    mqtt_accepts,
    postgres_answers,
    start_mosquitto,
    start_tansu,
    start_victoria_metrics,
)


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[tuple[str, int]]:
    """(host, port) of a Mosquitto: the one on 127.0.0.1:1883 when it answers, else one started for the session."""
    if mqtt_accepts(*DEFAULT_MQTT):
        yield DEFAULT_MQTT
        return
    try:
        handle = start_mosquitto()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield handle.address
    finally:
        handle.stop()


@pytest.fixture
def private_mosquitto() -> Iterator[MosquittoHandle]:
    """A Mosquitto of this test's own on a free port, which the test may stop and start again."""
    try:
        handle = start_mosquitto()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuHandle]:
    """A tansu Kafka-protocol broker of this session (memory storage) on a free port."""
    try:
        handle = start_tansu()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield handle
    finally:
        handle.cleanup()


@pytest.fixture(scope="session")
def victoria_metrics() -> Iterator[VictoriaMetricsHandle]:
    """A VictoriaMetrics of this session (InfluxDB line-protocol write path) on a free port."""
    try:
        handle = start_victoria_metrics()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield handle
    finally:
        handle.cleanup()


@pytest.fixture
def private_victoria_metrics() -> Iterator[VictoriaMetricsHandle]:
    """A VictoriaMetrics of this test's own, which the test may stop and start again (same port and data)."""
    try:
        handle = start_victoria_metrics()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield handle
    finally:
        handle.cleanup()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a database created on the local PostgreSQL for this session and dropped after it."""
    if not postgres_answers():
        pytest.fail("no PostgreSQL answers at TANKWATCH_TEST_POSTGRES (default 127.0.0.1:5432)", pytrace=False)
    database = PostgresDatabase()
    try:
        yield database.url
    finally:
        database.drop()
