"""The distributed dashboard's escalations: refusals decided from the shared store before anything is sent, actions
carried as commands to the worker's engine and answered with the stored result, 504 when no worker applies them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alarms.escalation import EscalationError, EscalationForbidden, EscalationStore
from alarms.escalation_remote import EscalationUnconfirmed, RemoteEscalations
from alarms.worker_escalation import WorkerEscalation
from tankwatch.records import AlarmAction
from tests.unit.test_auth_support import MIN, T0, alarm, site_with_users
from tests.unit.test_escalation import SENSOR, build, run_until, who


def test_actions_go_to_the_worker_and_come_back_from_the_store(tmp_path: Path) -> None:
    site, clock, engine, auth = build(tmp_path, site_with_users())
    worker = WorkerEscalation(engine)
    engine.release({e.id for e in site.enterprises})
    asyncio.run(worker.adopt({"E1"}))
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    run_until(engine, clock, T0 + 120 * MIN)  # up to the park regulator (high: 10, 15, 30, 60 min)
    sent: list[dict] = []

    def send(command: dict, timeout_s: float) -> None:  # the bus, and the worker owning E1 applying it
        sent.append(command)
        assert asyncio.run(worker.apply(command))

    remote = RemoteEscalations(site, clock, EscalationStore(engine.store.engine), send)
    operator, regulator = who(auth, "op-e1"), who(auth, "park-reg")
    assert [e.escalation_id for e in remote.list({"E1"})] == [raised.occurrence_id]
    with pytest.raises(EscalationForbidden):
        remote.acknowledge(raised.occurrence_id, regulator)
    acked = remote.acknowledge(raised.occurrence_id, operator, "on it")
    assert (acked.levels["enterprise"].acked_by, acked.levels["enterprise"].note) == ("op-e1", "on it")
    with pytest.raises(EscalationError, match="already acknowledged"):  # refused from the store, nothing sent
        remote.acknowledge(raised.occurrence_id, operator)
    assert [c["op"] for c in sent] == ["escalation_acknowledge"]
    signed = remote.sign(raised.occurrence_id, regulator, "收到")
    assert signed.levels["park"].acked_by == "park-reg"
    with pytest.raises(EscalationError, match="disposition"):
        remote.close(raised.occurrence_id, regulator, "handled")
    remote.dispose(raised.occurrence_id, regulator, "现场已处置")
    closed = remote.close(raised.occurrence_id, regulator, "handled")
    assert closed.closed_by == "park-reg" and closed.status() == "awaiting_clear"
    assert engine.get(raised.occurrence_id, regulator).closed_by == "park-reg"  # the worker holds the same state
    assert [c["ts_ms"] for c in sent] == [clock.now_ms()] * 3


def test_an_action_no_worker_applies_is_a_504_within_the_confirmation_time(tmp_path: Path) -> None:
    site, clock, engine, auth = build(tmp_path, site_with_users())
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    engine.on_events([raised])
    lost = RemoteEscalations(site, clock, engine.store, lambda command, timeout_s: None, confirm_s=0.2)
    with pytest.raises(EscalationUnconfirmed, match="no alarm worker applied") as caught:
        lost.acknowledge(raised.occurrence_id, who(auth, "op-e1"))
    assert caught.value.status == 504

    def refused(command: dict, timeout_s: float) -> None:
        raise TimeoutError("no broker")

    with pytest.raises(EscalationUnconfirmed, match="the bus did not confirm"):
        RemoteEscalations(site, clock, engine.store, refused).acknowledge(raised.occurrence_id, who(auth, "op-e1"))


def test_events_the_dashboards_routines_raise_reach_the_owning_workers_engine(tmp_path: Path) -> None:
    site, clock, engine, _ = build(tmp_path, site_with_users())
    worker = WorkerEscalation(engine)
    sent: list[dict] = []

    def send(command: dict, timeout_s: float) -> None:
        sent.append(command)
        assert asyncio.run(worker.apply(command))

    remote = RemoteEscalations(site, clock, engine.store, send)
    raised = alarm(site, SENSOR, AlarmAction.RAISED, T0)
    remote.on_events([raised])
    assert [(c["op"], c["enterprise_id"]) for c in sent] == [("escalation_events", "E1")]
    assert [e.escalation_id for e in remote.list({"E1"})] == [raised.occurrence_id]  # raised by the worker's engine
    assert engine.list({"E1"})[0].steps_fired == {"operator": T0}
