"""Polling until a running process shows something, for tests that drive real processes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.3) -> Any:
    """Poll ``check`` until it returns something truthy (an HTTP or SQLite error counts as not yet), or fail
    naming ``what`` and the last answer."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, sqlite3.OperationalError) as exc:
            last = exc
        time.sleep(every_s)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")
