"""Protocol times: ``YYYY-MM-DD HH:MM:SS[.fff]`` in Beijing time (UTC+08:00), as the provincial platforms write them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8), "CST")
_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$")


def format_time(ts_ms: int) -> str:
    """Epoch milliseconds as protocol time; milliseconds are written only when not zero."""
    when = datetime.fromtimestamp(ts_ms // 1000, BEIJING)
    text = when.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{ts_ms % 1000:03d}" if ts_ms % 1000 else text


def parse_time(text: str) -> int:
    """Protocol time as epoch milliseconds (ValueError naming the expected form)."""
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"time {text!r} is not 'YYYY-MM-DD HH:MM:SS[.fff]' (Beijing time)")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match[7] or "0"
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=BEIJING)
    except ValueError as exc:
        raise ValueError(f"time {text!r}: {exc}") from None
    epoch = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (epoch.days * 86_400 + epoch.seconds) * 1000 + int(fraction.ljust(3, "0"))
