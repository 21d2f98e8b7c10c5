"""Alarm-system KPIs per enterprise: rate, floods, chattering, stale, bad actors, priority mix."""

from __future__ import annotations

import pytest

from alarms.kpi import PERIOD_MS, BadActor, alarm_kpis

H = 3600_000
T0 = 1_700_000_400_000 - (1_700_000_400_000 % PERIOD_MS)  # a period boundary


def occ(i, enterprise="E1", sensor="S1", condition="H", at=0, priority="medium", **kw):
    """An occurrence row as the event store holds it."""
    return {
        "occurrence_id": f"o{i}",
        "enterprise_id": enterprise,
        "sensor_id": sensor,
        "condition": condition,
        "priority": priority,
        "raised_ms": T0 + at,
        "state": kw.pop("state", "cleared"),
        "active": kw.pop("active", False),
        "annunciated": kw.pop("annunciated", True),
    }


def test_rate_floods_and_priority_mix():
    rows = [occ(i, sensor=f"S{i % 4}", at=i * 1000, priority="high" if i % 3 == 0 else "medium") for i in range(12)]
    rows += [occ(100 + i, at=PERIOD_MS + i * 60_000) for i in range(3)]  # next period: 3 alarms
    rows.append(occ(200, at=30_000, annunciated=False))  # suppressed as raised: not operator load
    k = alarm_kpis(rows, T0, T0 + 6 * PERIOD_MS, T0 + 6 * PERIOD_MS)["E1"]
    assert (k.alarms, k.periods, k.peak_10min, k.flood_periods) == (15, 6, 12, 1)
    assert k.alarms_per_10min == pytest.approx(15 / 6)
    assert k.flood_share == pytest.approx(1 / 6)
    assert k.priority_counts == {"critical": 0, "high": 4, "medium": 11, "low": 0}
    assert sum(k.priority_shares.values()) == pytest.approx(1)


def test_chattering_is_three_raises_within_sixty_seconds():
    rows = [occ(i, sensor="CH", at=t) for i, t in enumerate([0, 25_000, 60_000])]  # 3 within 60 s
    rows += [occ(10 + i, sensor="SLOW", at=t) for i, t in enumerate([0, 40_000, 80_001])]  # never 3 in 60 s
    k = alarm_kpis(rows, T0, T0 + H, T0 + H)["E1"]
    assert k.chattering == [BadActor("CH", "H", 3)]


def test_stale_alarms_and_top_ten_bad_actors():
    rows = [occ(i, sensor=f"S{i % 12}", at=i * 10) for i in range(60)]
    rows += [occ(99, sensor="OLD", at=-30 * H, state="active", active=True)]  # open and present for 30 h
    rows += [occ(98, sensor="RTN", at=-30 * H, state="active", active=False)]  # returned, unacknowledged
    k = alarm_kpis(rows, T0, T0 + H, T0 + H)["E1"]
    assert k.stale == ["o99"]
    assert len(k.bad_actors) == 10 and k.bad_actors[0] == BadActor("S0", "H", 5)


def test_enterprises_are_separate_and_listed_even_when_quiet():
    rows = [occ(1, enterprise="E1"), occ(2, enterprise="E2"), occ(3, enterprise="E2")]
    out = alarm_kpis(rows, T0, T0 + H, T0 + H, ["E1", "E2", "E3"])
    assert {e: k.alarms for e, k in out.items()} == {"E1": 1, "E2": 2, "E3": 0}
    with pytest.raises(ValueError, match="must end after it starts"):
        alarm_kpis(rows, T0, T0, T0)
