"""Escalation on a manual clock: every step of the default chain, stop at the first acknowledgement, reminders,
regulator sign/dispose/close, inhibition, routes as data, persistence across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarms.escalation import (
    DEFAULT_STEPS,
    DEFAULT_TIMERS_MIN,
    EscalationConfigError,
    EscalationEngine,
    EscalationError,
    EscalationForbidden,
    EscalationNotFound,
    EscalationStore,
    match_routes,
    resolve_routes,
)
from tankwatch.auth import Auth, AuthSettings, sync_site_users
from tankwatch.clock import ManualClock
from tankwatch.config import Site
from tankwatch.records import AlarmAction
from tankwatch.site import EscalationConfig
from tankwatch.stores.events import make_engine
from tankwatch.stores.users import UserStore
from tests.unit.test_auth_support import FAST_HASHER, MIN, T0, alarm, site_with_users

SENSOR = "T101-LT-A"  # E1 / HS1, Modbus device plc-HS1


@pytest.fixture
def world(tmp_path: Path):
    """(site, clock, engine, auth) on a SQLite file."""
    return build(tmp_path, site_with_users())


def build(tmp_path: Path, site: Site, clock: ManualClock | None = None):
    clock = clock or ManualClock(T0)
    db = make_engine(f"sqlite:///{tmp_path / 'esc.db'}")
    users = UserStore(db, FAST_HASHER)
    sync_site_users(users, site, demo=True, now_ms=T0)
    engine = EscalationEngine(site, clock, EscalationStore(db), users=users)
    auth = Auth(users, site, AuthSettings(secret="x" * 40))
    return site, clock, engine, auth


def who(auth: Auth, login: str):
    user = auth.users.get(login)
    assert user is not None
    return auth.principal_of(user)


def run_until(engine: EscalationEngine, clock: ManualClock, until_ms: int, step_ms: int = MIN) -> list:
    """Tick every ``step_ms`` up to ``until_ms`` (an accelerated clock), collecting notifications."""
    notes = []
    while clock.now_ms() < until_ms:
        clock.set(min(until_ms, clock.now_ms() + step_ms))
        notes += engine.tick()
    return notes


def test_default_chain_fires_every_step_at_its_timer_and_reaches_the_right_people(world) -> None:
    site, clock, engine, _ = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    first = engine.on_events([raised])
    assert [(n.kind, n.context["step"], n.sound) for n in first] == [("raised", "operator", True)]
    assert first[0].recipients == ("op-e1",)  # the on-duty operator of E1 only
    timers = DEFAULT_TIMERS_MIN["high"]
    fired_at = [T0]
    for wait in timers:
        fired_at.append(fired_at[-1] + round(wait * MIN))
    notes = run_until(engine, clock, fired_at[-1] + 30 * MIN)
    steps = [(n.context["step"], n.ts_ms) for n in notes if n.kind == "escalated"]
    assert steps == list(zip(DEFAULT_STEPS[1:], fired_at[1:], strict=True))
    by_step = {n.context["step"]: n for n in notes if n.kind == "escalated"}
    assert by_step["operational"].recipients == ("zhangwei",)  # 张伟, HS1's 操作负责人, linked by login
    assert "张伟" in by_step["operational"].context["person"]
    assert by_step["technical"].recipients == ()  # 李明 has no login: notifiers (webhook/mail) still carry it
    assert by_step["park_regulator"].recipients == ("park-reg",)
    assert by_step["park_regulator"].level == "park"
    assert by_step["county_regulator"].recipients == ("county-reg",)  # not the regulator of another county
    e = engine.get(raised.occurrence_id, who(world[3], "county-reg"))
    assert e.step == len(DEFAULT_STEPS) - 1 and e.next_step_ms() is None


def test_escalation_stops_at_the_first_acknowledgement(world) -> None:
    site, clock, engine, _ = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    notes = run_until(engine, clock, T0 + 26 * MIN)  # 10 + 15 min: operational and technical have fired
    assert [n.context["step"] for n in notes if n.kind == "escalated"] == ["operational", "technical"]
    assert raised.occurrence_id in engine.overdue()
    ack = alarm(site, SENSOR, AlarmAction.ACKNOWLEDGED, T0 + 26 * MIN, raised_ms=T0, user="op-e1")
    engine.on_events([ack])
    later = run_until(engine, clock, T0 + 24 * 60 * MIN, step_ms=5 * MIN)
    assert later == []  # no further step and no reminder: the only level told has acknowledged
    assert raised.occurrence_id not in engine.overdue()
    e = engine.get(raised.occurrence_id, who(world[3], "op-e1"))
    assert e.levels["enterprise"].acked_by == "op-e1" and e.status() == "acknowledged"


def test_an_acknowledgement_finds_the_steps_due_before_it_fired_whenever_the_clock_ticked(world) -> None:
    """The chain depends on when the alarm was raised and answered, not on the phase of the ticks: a step due before
    an acknowledgement fires (at its due time) even when no tick came between; one due after it never does."""
    site, clock, engine, auth = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    due = T0 + round(DEFAULT_TIMERS_MIN["high"][0] * MIN)  # the operational step
    clock.set(due + 30_000)  # no tick since the raise
    e = engine.acknowledge(raised.occurrence_id, who(auth, "op-e1"), ts_ms=due + 1)
    assert e.steps_fired == {"operator": T0, "operational": due}
    assert run_until(engine, clock, T0 + 24 * 60 * MIN, step_ms=5 * MIN) == []
    again = alarm(site, "T101-TT", AlarmAction.RAISED, T0)
    engine.on_events([again])
    ack = alarm(site, "T101-TT", AlarmAction.ACKNOWLEDGED, due - 1, raised_ms=T0, user="op-e1")
    engine.on_events([ack])  # on its way while the step fell due: answered before it
    assert engine.get(again.occurrence_id, who(auth, "op-e1")).steps_fired == {"operator": T0}


def test_reminders_repeat_until_acknowledged(tmp_path: Path) -> None:
    site = site_with_users({"route": {"timers_min": {"high": [60, 60, 60, 60, 60]}, "repeat_interval_min": 3}})
    _, clock, engine, auth = build(tmp_path, site)
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    notes = run_until(engine, clock, T0 + 10 * MIN)
    reminders = [n for n in notes if n.kind == "reminder"]
    assert [n.ts_ms for n in reminders] == [T0 + 3 * MIN, T0 + 6 * MIN, T0 + 9 * MIN]
    assert [n.context["reminder_no"] for n in reminders] == [1, 2, 3]
    assert all(n.recipients == ("op-e1",) and n.sound for n in reminders)
    engine.acknowledge(raised.occurrence_id, who(auth, "zhangwei"), "on my way")
    assert run_until(engine, clock, T0 + 30 * MIN) == []


def test_each_organisation_level_acknowledges_separately(world) -> None:
    site, clock, engine, auth = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    run_until(engine, clock, T0 + 116 * MIN)  # 10+15+30+60: the park regulator was told at T0+115 min
    e = engine.get(raised.occurrence_id, who(auth, "park-reg"))
    assert e.steps[e.step] == "park_regulator"
    engine.acknowledge(raised.occurrence_id, who(auth, "op-e1"))  # the enterprise answers at last
    notes = run_until(engine, clock, T0 + 140 * MIN)
    assert not [n for n in notes if n.kind == "escalated"]  # the climb stopped: the county is not told
    park_reminders = [n for n in notes if n.kind == "reminder"]
    assert park_reminders and all(n.level == "park" and n.recipients == ("park-reg",) for n in park_reminders)
    engine.sign(raised.occurrence_id, who(auth, "park-reg"))
    assert run_until(engine, clock, T0 + 200 * MIN) == []
    with pytest.raises(EscalationError, match="already acknowledged"):
        engine.acknowledge(raised.occurrence_id, who(auth, "zhangwei"))


def test_regulator_signs_disposes_and_closes_and_it_ends_only_after_the_alarm_clears(world) -> None:
    site, clock, engine, auth = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    occ = raised.occurrence_id
    park = who(auth, "park-reg")
    with pytest.raises(EscalationError, match="not escalated to the park"):
        engine.sign(occ, park)
    run_until(engine, clock, T0 + 116 * MIN)
    with pytest.raises(EscalationForbidden):
        engine.sign(occ, who(auth, "op-e1"))
    with pytest.raises(EscalationForbidden):
        engine.acknowledge(occ, park)
    with pytest.raises(EscalationNotFound):
        engine.sign(occ, who(auth, "other-county"))  # another county's regulator cannot even see it
    with pytest.raises(EscalationError, match="sign"):
        engine.dispose(occ, park, "关闭进料阀")
    engine.sign(occ, park, "已签收")
    with pytest.raises(EscalationError, match="disposition"):
        engine.close(occ, park, "handled")
    engine.dispose(occ, park, "已通知企业关闭进料阀，现场确认液位回落")
    with pytest.raises(EscalationError, match="unknown reason"):
        engine.close(occ, park, "bored")
    e = engine.close(occ, park, "handled", "处置完毕")
    assert e.status() == "awaiting_clear" and e.state == "open"  # the alarm is still active
    with pytest.raises(EscalationError, match="already closed"):
        engine.close(occ, park, "handled")
    notes = engine.on_events([alarm(site, SENSOR, AlarmAction.CLEARED, T0 + 130 * MIN, raised_ms=T0)])
    assert [n.kind for n in notes] == ["cleared", "closed"]
    assert set(notes[1].recipients) >= {"op-e1", "park-reg"}
    e = engine.get(occ, park)
    assert e.state == "closed" and e.close_reason == "handled" and e.closed_by == "park-reg"
    assert [d.text for d in engine.store.dispositions(occ)] == ["已通知企业关闭进料阀，现场确认液位回落"]
    assert engine.list(park.enterprises, "open") == []
    assert [x.escalation_id for x in engine.list(park.enterprises, "all")] == [occ]


def test_cleared_alarm_told_to_a_regulator_waits_for_the_regulator_to_close(world) -> None:
    site, clock, engine, auth = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    run_until(engine, clock, T0 + 116 * MIN)
    engine.on_events([alarm(site, SENSOR, AlarmAction.CLEARED, T0 + 117 * MIN, raised_ms=T0)])
    park = who(auth, "park-reg")
    assert engine.get(raised.occurrence_id, park).status() == "awaiting_close"
    engine.sign(raised.occurrence_id, park)
    engine.dispose(raised.occurrence_id, park, "现场核实为误报")
    assert engine.close(raised.occurrence_id, park, "false_alarm").state == "closed"


def test_alarm_acknowledged_and_cleared_within_the_enterprise_closes_by_itself(world) -> None:
    site, clock, engine, _ = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    engine.on_events([alarm(site, SENSOR, AlarmAction.CLEARED, T0 + MIN, raised_ms=T0)])
    assert engine.list({"E1"}, "open")  # cleared but nobody acknowledged yet
    engine.on_events([alarm(site, SENSOR, AlarmAction.ACKNOWLEDGED, T0 + 2 * MIN, raised_ms=T0, user="op-e1")])
    assert engine.list({"E1"}, "open") == []


def chain_times(priority: str) -> list[int]:
    """When each step of the default chain fires for an alarm raised at T0 that nobody acknowledges."""
    fired = [T0]
    for wait in DEFAULT_TIMERS_MIN[priority]:
        fired.append(fired[-1] + round(wait * MIN))
    return fired


def test_an_alarm_that_returned_unacknowledged_climbs_to_the_county(world) -> None:
    """Returning to normal never stops a climb: nobody acknowledged, so every level up to the county is told."""
    site, clock, engine, auth = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised, alarm(site, SENSOR, AlarmAction.CLEARED, T0 + MIN, raised_ms=T0)])
    fired = chain_times("high")
    e = engine.get(raised.occurrence_id, who(auth, "op-e1"))
    assert e.next_step_ms() == fired[1] and e.status() == "open"
    notes = run_until(engine, clock, fired[-1] + MIN)
    steps = [(n.context["step"], n.ts_ms) for n in notes if n.kind == "escalated"]
    assert steps == list(zip(DEFAULT_STEPS[1:], fired[1:], strict=True))
    reminders = {n.level for n in notes if n.kind == "reminder"}
    assert reminders >= {"enterprise", "park"}  # reminders follow the same rule
    e = engine.get(raised.occurrence_id, who(auth, "county-reg"))
    assert e.at_top and e.overdue and e.status() == "awaiting_close"
    assert raised.occurrence_id in engine.overdue()


def test_a_latched_gas_alarm_climbs_until_reset_and_a_regulator_closes_it(world) -> None:
    """The case of the demo's chlorine leak: GAS2 latched, its condition gone, nobody acknowledging: the park
    regulator is told, signs, records the disposition and closes; the escalation ends when the operator resets."""
    site, clock, engine, auth = world
    gas = "HS1-GD03"  # a gas detector of E1
    kw = {"condition": "GAS2", "priority": "critical", "raised_ms": T0}
    raised = alarm(site, gas, AlarmAction.RAISED, T0, condition="GAS2", priority="critical")
    engine.on_events([raised, alarm(site, gas, AlarmAction.CLEARED, T0 + 30_000, note="latched", **kw)])
    fired = chain_times("critical")
    run_until(engine, clock, fired[4] + MIN)  # the park regulator was told at fired[4]
    park = who(auth, "park-reg")
    e = engine.get(raised.occurrence_id, park)
    assert e.latched and e.steps[e.step] == "park_regulator" and e.status() == "open"
    engine.sign(raised.occurrence_id, park, "已签收")
    assert engine.get(raised.occurrence_id, park).status() == "signed"
    engine.dispose(raised.occurrence_id, park, "已通知企业现场检查氯气泄漏点")
    e = engine.close(raised.occurrence_id, park, "handled")
    assert e.status() == "awaiting_clear" and e.state == "open"  # still latched
    notes = engine.on_events([alarm(site, gas, AlarmAction.RESET, fired[4] + 5 * MIN, user="op-e1", **kw)])
    e = engine.get(raised.occurrence_id, park)
    assert e.state == "closed" and e.status() == "closed" and "closed" in [n.kind for n in notes]


def test_a_latched_alarm_reset_within_the_enterprise_ends_as_resolved_not_closed(world) -> None:
    site, clock, engine, auth = world
    kw = {"condition": "GAS1", "priority": "medium", "raised_ms": T0}
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0, condition="GAS1", priority="medium")
    engine.on_events([raised, alarm(site, SENSOR, AlarmAction.CLEARED, T0 + MIN, note="latched", **kw)])
    engine.on_events([alarm(site, SENSOR, AlarmAction.ACKNOWLEDGED, T0 + 2 * MIN, user="op-e1", **kw)])
    e = engine.get(raised.occurrence_id, who(auth, "op-e1"))
    assert e.state == "open" and e.status() == "acknowledged"  # 企业已确认: latched, not back to normal yet
    engine.on_events([alarm(site, SENSOR, AlarmAction.RESET, T0 + 3 * MIN, user="op-e1", **kw)])
    e = engine.get(raised.occurrence_id, who(auth, "op-e1"))
    assert e.state == "closed" and e.status() == "resolved"  # never 已消警: no regulator closed it


def test_a_shelved_alarm_that_returns_ends_without_an_acknowledgement(world) -> None:
    """Its occurrence closed in the alarm core (shelved and returned): nothing is left to acknowledge."""
    site, clock, engine, _ = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised, alarm(site, SENSOR, AlarmAction.SHELVED, T0 + MIN, raised_ms=T0, user="op-e1")])
    engine.on_events([alarm(site, SENSOR, AlarmAction.CLEARED, T0 + 2 * MIN, raised_ms=T0)])
    assert engine.list({"E1"}) == []
    assert engine.list({"E1"}, "all")[0].status() == "lapsed"  # never "acknowledged": nobody did


def test_the_inbox_lists_by_priority_then_age_and_never_cuts_off_an_open_escalation(world) -> None:
    site, clock, engine, auth = world
    comm_sensors = [s.sensor.id for s in site.sensors if s.enterprise_id == "E1"][:6]
    comm = [alarm(site, s, AlarmAction.RAISED, T0 + i * 1000, condition="COMM", priority="low", note="comm-fail")
            for i, s in enumerate(comm_sensors)]
    critical = alarm(site, SENSOR, AlarmAction.RAISED, T0 - 5 * MIN, condition="HH", priority="critical")
    high_new = alarm(site, SENSOR, AlarmAction.RAISED, T0 + 9000, condition="H", priority="high")
    high_old = alarm(site, SENSOR, AlarmAction.RAISED, T0 + 8000, condition="L", priority="high")
    engine.on_events([critical, *comm, high_old, high_new])
    order = [e.escalation_id for e in engine.list({"E1"}, "all", limit=2)]
    assert order[:3] == [critical.occurrence_id, high_old.occurrence_id, high_new.occurrence_id]
    assert order[3:] == [a.occurrence_id for a in comm]  # all open ones, whatever the limit


def test_comm_loss_on_a_device_mutes_the_stale_alarms_of_its_sensors(world) -> None:
    site, clock, engine, _ = world
    same_device = [s.sensor.id for s in site.sensors if s.device_id == "plc-HS1"][:3]
    other_device = next(s.sensor.id for s in site.sensors if s.device_id == "plc-HS2")
    comm = alarm(site, same_device[0], AlarmAction.RAISED, T0, condition="COMM", priority="low", note="comm-fail")
    stale = alarm(site, same_device[1], AlarmAction.RAISED, T0 + 1000, condition="DQ", priority="low", note="stale")
    elsewhere = alarm(site, other_device, AlarmAction.RAISED, T0 + 1000, condition="DQ", priority="low", note="stale")
    notes = engine.on_events([comm, stale, elsewhere])
    assert {n.escalation_id for n in notes} == {comm.occurrence_id, elsewhere.occurrence_id}
    assert engine.is_muted(stale.occurrence_id) and not engine.is_muted(elsewhere.occurrence_id)
    later = run_until(engine, clock, T0 + 40 * MIN)
    assert stale.occurrence_id not in {n.escalation_id for n in later}
    # The comm-loss ends: the stale alarm, still active, now starts its own escalation.
    cleared = engine.on_events(
        [alarm(site, same_device[0], AlarmAction.CLEARED, T0 + 41 * MIN, condition="COMM", raised_ms=T0)]
    )
    assert [(n.escalation_id, n.kind, n.ts_ms) for n in cleared if n.escalation_id == stale.occurrence_id] == [
        (stale.occurrence_id, "raised", T0 + 41 * MIN)
    ]
    assert not engine.is_muted(stale.occurrence_id)


def test_an_inhibiting_alarm_raised_later_mutes_one_already_escalating(world) -> None:
    site, clock, engine, _ = world
    a, b = [s.sensor.id for s in site.sensors if s.device_id == "plc-HS1"][:2]
    stale = alarm(site, b, AlarmAction.RAISED, T0, condition="DQ", priority="low", note="stale")
    engine.on_events([stale])
    engine.on_events([alarm(site, a, AlarmAction.RAISED, T0 + MIN, condition="COMM", priority="low", note="comm-fail")])
    assert engine.is_muted(stale.occurrence_id)
    later = run_until(engine, clock, T0 + 8 * 60 * MIN, step_ms=10 * MIN)
    assert stale.occurrence_id not in {n.escalation_id for n in later}


def test_shelving_pauses_the_climb_and_unshelving_restarts_the_timer(world) -> None:
    site, clock, engine, _ = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised, alarm(site, SENSOR, AlarmAction.SHELVED, T0 + MIN, raised_ms=T0)])
    assert run_until(engine, clock, T0 + 60 * MIN) == []
    engine.on_events([alarm(site, SENSOR, AlarmAction.UNSHELVED, T0 + 60 * MIN, raised_ms=T0)])
    notes = run_until(engine, clock, T0 + 71 * MIN)
    assert [(n.context["step"], n.ts_ms) for n in notes if n.kind == "escalated"] == [("operational", T0 + 70 * MIN)]


def test_redelivered_events_change_nothing(world) -> None:
    site, clock, engine, _ = world
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    assert len(engine.on_events([raised])) == 1
    assert engine.on_events([raised]) == []


def test_state_survives_a_restart(tmp_path: Path) -> None:
    site = site_with_users()
    _, clock, engine, auth = build(tmp_path, site)
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    run_until(engine, clock, T0 + 11 * MIN)
    _, _, again, _ = build(tmp_path, site, clock)
    notes = run_until(again, clock, T0 + 26 * MIN)
    assert [(n.context["step"], n.ts_ms) for n in notes if n.kind == "escalated"] == [("technical", T0 + 25 * MIN)]
    assert raised.occurrence_id in again.overdue()


# ----- routes as data -------------------------------------------------------------------------------------


def labels(**kw) -> dict:
    return {"priority": "high", "enterprise": "E1", "source": "HS1", "grade": None, "condition": "HH", **kw}


def test_route_tree_inherits_and_first_match_wins_unless_continue() -> None:
    config = EscalationConfig.model_validate(
        {
            "receivers": [
                {"id": "ops", "webhook": {"url": "http://127.0.0.1:1/x"}},
                {"id": "mail", "email": {"host": "127.0.0.1", "sender": "a@b", "to": ["c@d"]}},
            ],
            "route": {
                "receivers": ["ops"],
                "timers_min": {"high": [1, 2, 3, 4, 5]},
                "routes": [
                    {"id": "chlorine", "match": {"source": ["HS3"]}, "steps": ["operator", "park_regulator"],
                     "timers_min": {"high": [2]}, "continue": True},
                    {"id": "red", "match": {"grade": ["red"]}, "receivers": ["ops", "mail"]},
                    {"id": "critical-e1", "match": {"enterprise": ["E1"], "priority": ["high"]},
                     "repeat_interval_min": 1},
                ],
            },
        }
    )
    root = resolve_routes(config, {"ops", "mail"})
    assert [r.id for r in match_routes(root, labels())] == ["critical-e1"]
    hit = match_routes(root, labels())[0]
    assert hit.receivers == ("ops",) and hit.timers_ms("high") == (1 * MIN, 2 * MIN, 3 * MIN, 4 * MIN, 5 * MIN)
    assert hit.repeat_ms == MIN and hit.steps == DEFAULT_STEPS
    both = match_routes(root, labels(source="HS3", enterprise="E3", grade="red"))
    assert [r.id for r in both] == ["chlorine", "red"]  # chlorine continues; red stops the search
    assert both[0].timers_ms("high") == (2 * MIN,) and both[0].receivers == ("ops",)
    assert [r.id for r in match_routes(root, labels(enterprise="E2", priority="low"))] == ["escalation.route"]


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"steps": ["operator", "principal", "park_regulator"], "timers_min": {"high": [5]}}, "need 2 timers"),
        ({"receivers": ["nobody"]}, "unknown receiver ids"),
    ],
)
def test_bad_routes_are_named(route: dict, message: str) -> None:
    with pytest.raises(EscalationConfigError, match=message):
        resolve_routes(EscalationConfig.model_validate({"route": route}), set())


def test_matchers_naming_unknown_enterprises_are_refused(tmp_path: Path) -> None:
    site = site_with_users({"route": {"routes": [{"match": {"enterprise": ["E9"]}}]}})
    with pytest.raises(EscalationConfigError, match="E9"):
        build(tmp_path, site)


def test_route_steps_and_receivers_apply_to_the_escalation(tmp_path: Path) -> None:
    site = site_with_users(
        {
            "receivers": [{"id": "hook", "webhook": {"url": "http://127.0.0.1:9/hook"}}],
            "route": {"routes": [{"match": {"source": ["HS1"]}, "steps": ["operator", "county_regulator"],
                                  "timers_min": {"high": [3]}, "receivers": ["hook"]}]},
        }
    )
    _, clock, engine, _ = build(tmp_path, site)
    engine.on_events([alarm(site, SENSOR, AlarmAction.RAISED, T0)])
    notes = run_until(engine, clock, T0 + 4 * MIN)
    esc = [n for n in notes if n.kind == "escalated"]
    assert [(n.context["step"], n.ts_ms, n.receivers) for n in esc] == [("county_regulator", T0 + 3 * MIN, ("hook",))]


async def test_runner_feeds_the_engine_from_the_bus_and_ticks_on_the_clock(tmp_path: Path) -> None:
    import asyncio

    from alarms.escalation import EscalationRunner
    from tankwatch import bus as topics
    from tankwatch.bus import MemoryBus

    site = site_with_users()
    _, clock, engine, _ = build(tmp_path, site)
    bus = MemoryBus()
    runner = EscalationRunner(engine, bus, clock, tick_s=60)
    task = asyncio.create_task(runner.run())
    try:
        raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
        await bus.publish(topics.EVENTS, [raised, "not an event"])
        for _ in range(500):
            if engine.list({"E1"}):
                break
            await asyncio.sleep(0.01)
        clock.set(T0 + 10 * MIN)  # wakes the ticker, which fires the second step
        for _ in range(500):
            if engine.list({"E1"})[0].step == 1:
                break
            await asyncio.sleep(0.01)
        assert engine.list({"E1"})[0].steps_fired == {"operator": T0, "operational": T0 + 10 * MIN}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_runner_ticks_at_once_when_the_clock_moved_during_a_tick(tmp_path: Path) -> None:
    """A driven clock that moves while a tick runs wakes the next tick, instead of being slept through."""
    import asyncio
    import threading

    from alarms.escalation import EscalationRunner
    from tankwatch.bus import MemoryBus

    site = site_with_users()
    _, clock, engine, _ = build(tmp_path, site)
    engine.on_events([alarm(site, SENSOR, AlarmAction.RAISED, T0)])
    in_tick, release = threading.Event(), threading.Event()
    ticked_at: list[int] = []
    tick = engine.tick

    def held_tick(now_ms: int):
        ticked_at.append(now_ms)
        if len(ticked_at) == 1:
            in_tick.set()
            release.wait(10)
        return tick(now_ms)

    engine.tick = held_tick  # type: ignore[method-assign]
    task = asyncio.create_task(EscalationRunner(engine, MemoryBus(), clock, tick_s=60).run())
    try:
        assert await asyncio.to_thread(in_tick.wait, 10)
        clock.set(T0 + 10 * MIN)  # while the first tick (at T0) is still running
        release.set()
        for _ in range(500):
            if len(ticked_at) > 1:
                break
            await asyncio.sleep(0.01)
        assert ticked_at[:2] == [T0, T0 + 10 * MIN]
        assert engine.list({"E1"})[0].steps_fired == {"operator": T0, "operational": T0 + 10 * MIN}
    finally:
        release.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
