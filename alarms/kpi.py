"""Alarm-system KPIs per enterprise (one operator position), after ISA-18.2 / EEMUA 191.

Computed from occurrence rows (tankwatch/stores/events.py); only annunciated occurrences count as operator
load (an occurrence raised while suppressed by design or shelved never reached the operator).

- alarms per 10 minutes: annunciated raises in the window / number of 10-minute periods in it
- flood periods: epoch-aligned 10-minute periods with more than 10 raises
- chattering alarms: sensor × condition raised 3 or more times within 60 s
- stale alarms: still present (and open) more than 24 h after being raised
- top-10 bad actors: sensor × condition by number of raises
- priority mix: raises per priority, and their shares
- shelving (from shelf rows): alarms shelved now, shelves begun in the window, minutes shelved within it, the
  longest shelf, shelves the clock ended (expired) and occurrences raised under a shelf
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PERIOD_MS = 10 * 60_000
FLOOD_ABOVE = 10  # raises per 10 minutes
CHATTER_COUNT = 3
CHATTER_WINDOW_MS = 60_000
STALE_AFTER_MS = 24 * 3600_000
TOP = 10
PRIORITIES = ("critical", "high", "medium", "low")


@dataclass(frozen=True, slots=True)
class BadActor:
    """An alarm (sensor × condition) and how often it was raised."""

    sensor_id: str
    condition: str
    count: int


@dataclass(slots=True)
class ShelvingKpis:
    """How much one enterprise shelved over one window (EEMUA 191: shelving is watched, like alarm rates)."""

    shelved_now: int = 0
    shelves: int = 0  # begun in the window
    shelved_minutes: float = 0.0  # every shelf's time within the window, summed
    longest_minutes: float = 0.0  # the longest shelf overlapping the window, whole length
    expired: int = 0  # ended by the clock within the window
    occurrences: int = 0  # raised under a shelf that overlaps the window


@dataclass(slots=True)
class EnterpriseKpis:
    """The KPIs of one enterprise over one window."""

    enterprise_id: str
    since_ms: int
    until_ms: int
    alarms: int = 0
    alarms_per_10min: float = 0.0
    peak_10min: int = 0
    periods: int = 0
    flood_periods: int = 0
    flood_share: float = 0.0
    chattering: list[BadActor] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # occurrence ids
    bad_actors: list[BadActor] = field(default_factory=list)
    priority_counts: dict[str, int] = field(default_factory=dict)
    priority_shares: dict[str, float] = field(default_factory=dict)
    shelving: ShelvingKpis = field(default_factory=ShelvingKpis)


def alarm_kpis(
    occurrences: Iterable[Mapping[str, Any]],
    since_ms: int,
    until_ms: int,
    now_ms: int,
    enterprise_ids: Iterable[str] = (),
    shelves: Iterable[Mapping[str, Any]] = (),
) -> dict[str, EnterpriseKpis]:
    """KPIs per enterprise over [since_ms, until_ms); ``enterprise_ids`` are listed even with no alarms.

    ``shelves`` are shelf rows (tankwatch/stores/events.py) overlapping the window; without them the shelving KPIs
    stay zero.
    """
    if until_ms <= since_ms:
        raise ValueError(f"the KPI window must end after it starts ({since_ms} .. {until_ms})")
    raises: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    stale: dict[str, list[str]] = defaultdict(list)
    for occ in occurrences:
        if not occ.get("annunciated", True):
            continue
        enterprise = occ["enterprise_id"]
        if since_ms <= occ["raised_ms"] < until_ms:
            raises[enterprise].append(occ)
        if occ.get("state") != "cleared" and occ.get("active") and now_ms - occ["raised_ms"] > STALE_AFTER_MS:
            stale[enterprise].append(occ["occurrence_id"])
    shelving = shelving_kpis(shelves, since_ms, until_ms)
    first_period = since_ms // PERIOD_MS
    periods = (until_ms - 1) // PERIOD_MS - first_period + 1
    out: dict[str, EnterpriseKpis] = {}
    for enterprise in sorted(set(enterprise_ids) | set(raises) | set(stale) | set(shelving)):
        rows = raises.get(enterprise, [])
        per_period = Counter(r["raised_ms"] // PERIOD_MS for r in rows)
        counts = Counter((r["sensor_id"], r["condition"]) for r in rows)
        priorities = Counter(r["priority"] for r in rows)
        kpis = EnterpriseKpis(
            enterprise_id=enterprise,
            since_ms=since_ms,
            until_ms=until_ms,
            alarms=len(rows),
            alarms_per_10min=len(rows) * PERIOD_MS / (until_ms - since_ms),
            peak_10min=max(per_period.values(), default=0),
            periods=periods,
            flood_periods=sum(1 for n in per_period.values() if n > FLOOD_ABOVE),
            chattering=_chattering(rows),
            stale=sorted(stale.get(enterprise, [])),
            bad_actors=[
                BadActor(s, c, n) for (s, c), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
            ],
            priority_counts={p: priorities.get(p, 0) for p in PRIORITIES},
            shelving=shelving.get(enterprise, ShelvingKpis()),
        )
        kpis.flood_share = kpis.flood_periods / periods
        kpis.priority_shares = {p: (n / len(rows) if rows else 0.0) for p, n in kpis.priority_counts.items()}
        out[enterprise] = kpis
    return out


def shelving_kpis(shelves: Iterable[Mapping[str, Any]], since_ms: int, until_ms: int) -> dict[str, ShelvingKpis]:
    """Shelving KPIs per enterprise over [since_ms, until_ms) from shelf rows (a holding shelf runs to until_ms)."""
    out: dict[str, ShelvingKpis] = defaultdict(ShelvingKpis)
    for shelf in shelves:
        begin = shelf["since_ms"]
        end = shelf["ended_ms"] if shelf["ended_ms"] is not None else until_ms
        if begin >= until_ms or end < since_ms:
            continue
        k = out[shelf["enterprise_id"]]
        if shelf["ended_ms"] is None:
            k.shelved_now += 1
        if begin >= since_ms:
            k.shelves += 1
        k.shelved_minutes += (min(end, until_ms) - max(begin, since_ms)) / 60_000
        k.longest_minutes = max(k.longest_minutes, (end - begin) / 60_000)
        if shelf["ended_ms"] is not None and shelf["ended_by"] is None and end >= since_ms:
            k.expired += 1
        k.occurrences += shelf["occurrences"]
    return dict(out)


def _chattering(rows: list[Mapping[str, Any]]) -> list[BadActor]:
    """Alarms raised CHATTER_COUNT or more times within CHATTER_WINDOW_MS, with their raise counts."""
    times: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in rows:
        times[(r["sensor_id"], r["condition"])].append(r["raised_ms"])
    out = []
    for (sensor, condition), ts in sorted(times.items()):
        ts.sort()
        k = CHATTER_COUNT - 1
        if any(ts[i + k] - ts[i] <= CHATTER_WINDOW_MS for i in range(len(ts) - k)):
            out.append(BadActor(sensor, condition, len(ts)))
    return out
