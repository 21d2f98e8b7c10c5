"""Shared fixtures: test services on 127.0.0.1 (see bench/services.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.services import (
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

# Every app and CLI the tests start journals with this audit key (production refuses to start without one).
TEST_AUDIT_KEY = "test-audit-key-0123456789-abcdefghijklmnopqrstuvwxyz"
os.environ.setdefault("TANKWATCH_AUDIT_KEY", TEST_AUDIT_KEY)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadgroup`` (make test) the browser tests share one worker, one demo and one
    browser; every other test goes to whichever worker is free."""
    for item in items:
        if "e2e" in item.nodeid.split("/")[:2]:
            item.add_marker(pytest.mark.xdist_group("browser"))


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook, called on the controller
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Refuse to run when pytest-xdist did not group the browser tests (a pytest it does not support)."""
    ungrouped = [i for i in ids if "e2e" in i.split("/")[:2] and "@" not in i]
    if ungrouped and node.config.getoption("dist") == "loadgroup":
        raise pytest.UsageError(f"pytest-xdist did not put {ungrouped[0]} (and {len(ungrouped) - 1} more) in the "
                                "browser group, so each worker would start its own demo and browser: install the "
                                "pytest version pyproject.toml pins")


@contextlib.contextmanager
def running(start: Callable[[], Any], stop: str) -> Iterator[Any]:
    """A test server from ``start`` (its RuntimeError fails the test with its message), stopped by ``stop`` after."""
    try:
        handle = start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield handle
    finally:
        getattr(handle, stop)()


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[tuple[str, int]]:
    """(host, port) of a Mosquitto: the one on 127.0.0.1:1883 when it answers, else one started for the session."""
    if mqtt_accepts(*DEFAULT_MQTT):
        yield DEFAULT_MQTT
        return
    with running(start_mosquitto, "stop") as handle:
        yield handle.address


@pytest.fixture
def private_mosquitto() -> Iterator[MosquittoHandle]:
    """A Mosquitto of this test's own on a free port, which the test may stop and start again."""
    with running(start_mosquitto, "stop") as handle:
        yield handle


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuHandle]:
    """A tansu Kafka-protocol broker of this session (memory storage) on a free port."""
    with running(start_tansu, "cleanup") as handle:
        yield handle


@pytest.fixture(scope="session")
def victoria_metrics() -> Iterator[VictoriaMetricsHandle]:
    """A VictoriaMetrics of this session (InfluxDB line-protocol write path) on a free port."""
    with running(start_victoria_metrics, "cleanup") as handle:
        yield handle


@pytest.fixture
def private_victoria_metrics() -> Iterator[VictoriaMetricsHandle]:
    """A VictoriaMetrics of this test's own, which the test may stop and start again (same port and data)."""
    with running(start_victoria_metrics, "cleanup") as handle:
        yield handle


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
