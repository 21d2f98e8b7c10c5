"""Shared fixtures: test services on 127.0.0.1 (see tests/services.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import DEFAULT_MQTT, MosquittoHandle, mqtt_accepts, start_mosquitto


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
