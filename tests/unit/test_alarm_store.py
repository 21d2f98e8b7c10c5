"""The event store follows each occurrence's lifecycle exactly as the alarm core does, idempotent by event id."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings

from alarms.evaluate import N_CONDITIONS, AlarmCore
from alarms.rules import CONDITIONS
from tankwatch.stores.events import EventStore
from tests.unit.test_alarm_core import batch, level, make_site, operation, scenarios


def test_lifecycle_columns_follow_the_events():
    site = make_site([level(h=10), {"id": "GD1", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]}])
    core, store = AlarmCore(site), EventStore("sqlite://")
    h, gas = core.evaluate(batch([(0, 0, 11), (1, 0, 30)]))
    store.add([h, gas])
    assert {r["lifecycle"] for r in store.alarms("active")} == {"unack_active"}
    store.add(core.acknowledge(h.occurrence_id, "wang", 10) + core.acknowledge(gas.occurrence_id, "wang", 10))
    store.add(core.evaluate(batch([(0, 1000, 5), (1, 1000, 3)])))
    (row,) = store.alarms("active")  # H closed (acknowledged, returned); the gas alarm is latched
    assert (row["occurrence_id"], row["lifecycle"], row["latched"], row["cleared_ms"]) == (
        gas.occurrence_id,
        "latched",
        True,
        1000,
    )
    closed = store.occurrence(h.occurrence_id)
    assert (closed["state"], closed["closed_ms"], closed["acknowledged_by"]) == ("cleared", 1000, "wang")
    reset = core.reset(gas.occurrence_id, "li", 2000)
    assert store.add(reset) == 1 and store.add(reset) == 0  # redelivered: nothing new
    assert store.alarms("active") == []
    (again,) = core.evaluate(batch([(0, 3000, 11)]))
    store.add([again, *core.shelve(again.occurrence_id, "wang", 3100, "known fault", 600)])
    assert store.alarms("active") == [] and [r["lifecycle"] for r in store.alarms("shelved")] == ["shelved"]
    assert len(store.alarms("all")) == 3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_store_lifecycle_equals_the_core_over_random_streams(scenario):
    site, batches, between, _ = scenario
    core, store = AlarmCore(site), EventStore("sqlite://")
    ts = 1_000
    for rows, ops in zip(batches, between, strict=True):
        events = core.evaluate(batch(rows))
        store.add(events)
        store.add(events[: len(events) // 2])  # redelivery changes nothing
        ts = max([ts, *(r[1] for r in rows)])
        for op, pick, offset in ops:
            with contextlib.suppress(ValueError):  # a refused operation has no events
                store.add(operation(core, site, op, pick, ts + offset))
    want = {a["occurrence_id"]: a["state"] for a in core.active()}
    got = {r["occurrence_id"]: r["lifecycle"] for r in store.alarms("all", limit=5000) if r["state"] != "cleared"}
    assert got == want
    held = {(core.sensor_ids[slot // N_CONDITIONS], CONDITIONS[slot % N_CONDITIONS]): shelf.id
            for slot, shelf in core.shelving.items()}
    assert {(r["sensor_id"], r["condition"]): r["shelf_id"] for r in store.shelves(limit=5000)} == held


def test_a_shelf_is_listed_while_it_holds_with_what_was_raised_under_it():
    """The shelf outlives its occurrence: listed with who, why and until when, the next occurrence counted, and
    ended by the clock (expired) or by a person."""
    site = make_site([level(h=10)])
    core, store = AlarmCore(site), EventStore("sqlite://")
    (raised,) = core.evaluate(batch([(0, 0, 11)]))
    store.add([raised])
    store.add(core.shelve(raised.occurrence_id, "wang", 100, "sensor drift", 600, reason_code="instrument_fault",
                          approved_by="zhang"))
    store.add(core.evaluate(batch([(0, 1000, 5), (0, 2000, 11), (0, 3000, 5)])))  # returns, again, returns
    assert store.alarms("shelved") == [] and store.alarms("active") == []  # no occurrence is open …
    (shelf,) = store.shelves()  # … but the alarm is still shelved
    assert {k: shelf[k] for k in ("sensor_id", "condition", "shelved_by", "approved_by", "reason", "reason_code",
                                  "since_ms", "until_ms", "ended_ms", "occurrences")} == {
        "sensor_id": "T1-LT", "condition": "H", "shelved_by": "wang", "approved_by": "zhang",
        "reason": "sensor drift", "reason_code": "instrument_fault", "since_ms": 100, "until_ms": 600_100,
        "ended_ms": None, "occurrences": 1,
    }
    store.add(core.tick(600_100))
    assert store.shelves() == []
    (ended,) = store.shelves(holding=False, since_ms=0)
    assert (ended["ended_ms"], ended["ended_by"]) == (600_100, None)  # expired
    (again,) = core.evaluate(batch([(0, 700_000, 11)]))
    store.add([again, *core.shelve(again.occurrence_id, "li", 700_100, "known", 60)])
    store.add(core.unshelve(again.occurrence_id, "wang", 700_200))
    latest = store.shelves(holding=False, since_ms=0)[0]
    assert (latest["shelved_by"], latest["ended_ms"], latest["ended_by"]) == ("li", 700_200, "wang")
