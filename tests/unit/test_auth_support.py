"""Helpers shared by the auth, scope, escalation and audit tests (no tests here): the demo site with one user per
role, an app built on real stores, logins, and alarm events shaped like the alarm core's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI

from alarms.escalation import EscalationEngine, EscalationStore
from alarms.notify import Dispatcher, InboxSender
from dashboard.live import LiveHub
from tankwatch.auth import Auth, AuthSettings, sync_site_users
from tankwatch.bus import MemoryBus
from tankwatch.clock import Clock, ManualClock
from tankwatch.config import Site, load_site, rebuild_site
from tankwatch.records import AlarmAction, AlarmEvent, stable_id
from tankwatch.stores.audit import AuditJournal
from tankwatch.stores.events import EventStore
from tankwatch.stores.timeseries import TimeSeriesStore
from tankwatch.stores.users import UserStore
from tankwatch_app.dashboard_app import create_app

SITE_FILE = Path(__file__).parents[2] / "deploy" / "sites" / "demo-park.yaml"
T0 = 1_714_550_400_000  # 2024-05-01T08:00:00Z
MIN = 60_000
SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
AUDIT_KEY = b"audit-key-of-the-tests-0123456789-abcdefghijklmnop"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # argon2id, cheap for tests

# login → (role, scope, password); one operator per enterprise, a 包保 person of HS1, regulators, tester, admin.
USERS: dict[str, tuple[str, dict[str, Any]]] = {
    "op-e1": ("operator", {"enterprises": ["E1"]}),
    "op-e2": ("operator", {"enterprises": ["E2"]}),
    "op-e3": ("operator", {"enterprises": ["E3"]}),
    "zhangwei": ("safety_manager", {"enterprises": ["E1"]}),
    "park-reg": ("park_regulator", {"park": "rudong"}),
    "county-reg": ("county_regulator", {"county": "如东县"}),
    "other-county": ("county_regulator", {"county": "海安县"}),
    "tester": ("tester", {"enterprises": ["E2"]}),
    "admin": ("admin", {"park": "rudong"}),
}


def password(login: str) -> str:
    """The test password of a login."""
    return f"pw-{login}-123"


def site_with_users(escalation: dict[str, Any] | None = None) -> Site:
    """The demo site plus one user per role, 张伟 (HS1 操作负责人) linked to ``zhangwei``, and an escalation section
    (default: tankwatch's defaults)."""
    data = load_site(SITE_FILE).file.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["users"] = [
        {"login": login, "name": login, "role": role, "scope": scope, "password": password(login)}
        for login, (role, scope) in USERS.items()
    ]
    hs1 = data["enterprises"][0]["hazard_sources"][0]
    assert hs1["id"] == "HS1"
    hs1["responsible"]["operational"]["user"] = "zhangwei"
    data["escalation"] = escalation or {}  # the product's defaults, not the demo's short timers
    return rebuild_site(data, "test-site")


@dataclass
class Env:
    """An app on real stores with every piece reachable by tests."""

    site: Site
    clock: ManualClock
    app: FastAPI
    events: EventStore
    timeseries: TimeSeriesStore
    hub: LiveHub
    bus: MemoryBus
    auth: Auth
    audit: AuditJournal
    engine: EscalationEngine
    dispatcher: Dispatcher
    inbox: InboxSender


def make_env(tmp_path: Path, site: Site | None = None, clock: Clock | None = None) -> Env:
    """Stores in ``tmp_path``, users synced from the site, escalation engine with a dispatcher, and the app."""
    site = site or site_with_users()
    clock = clock or ManualClock(T0)
    events = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    timeseries = TimeSeriesStore(tmp_path / "ts.db", [s.sensor.id for s in site.sensors])
    users = UserStore(events.engine, FAST_HASHER)
    sync_site_users(users, site, demo=True, now_ms=T0)
    auth = Auth(users, site, AuthSettings(secret=SECRET), clock=ManualClock(T0))
    audit = AuditJournal(events.engine, key=AUDIT_KEY)
    inbox = InboxSender(events.engine)
    store = EscalationStore(events.engine)
    engine = EscalationEngine(site, clock, store, users=users)
    dispatcher = Dispatcher(clock, inbox=inbox, is_muted=engine.is_muted)
    engine.notifier = dispatcher
    bus = MemoryBus()
    hub = LiveHub(bus, site, push_interval_s=0.05)
    app = create_app(
        site, timeseries, events, hub, clock=clock, auth=auth, audit_journal=audit, escalation=engine, inbox=inbox
    )
    return Env(site, clock, app, events, timeseries, hub, bus, auth, audit, engine, dispatcher, inbox)


def headers(env: Env, login: str) -> dict[str, str]:
    """Bearer header for a login (token issued directly; the login route is tested on its own)."""
    user = env.auth.users.get(login)
    assert user is not None
    return {"Authorization": f"Bearer {env.auth.issue(user)}"}


def alarm(
    site: Site,
    sensor_id: str,
    action: AlarmAction,
    ts_ms: int,
    *,
    condition: str = "HH",
    raised_ms: int | None = None,
    priority: str = "high",
    note: str | None = None,
    user: str | None = None,
    value: float | None = 15.5,
) -> AlarmEvent:
    """An alarm event with ids derived the way the alarm core derives them."""
    info = site.sensor(sensor_id)
    occurrence = stable_id(sensor_id, condition, raised_ms if raised_ms is not None else ts_ms)
    return AlarmEvent(
        id=stable_id(occurrence, action, ts_ms),
        occurrence_id=occurrence,
        sensor_id=sensor_id,
        condition=condition,
        action=action,
        ts_ms=ts_ms,
        priority=priority,
        enterprise_id=info.enterprise_id,
        source_id=info.source_id,
        value=value,
        limit=15.04 if condition != "DQ" else None,
        user=user,
        note=note,
    )


def sensors_of(site: Site, enterprise_id: str) -> list[str]:
    """Sensor ids of one enterprise."""
    return [s.sensor.id for s in site.sensors if s.enterprise_id == enterprise_id]


def ids_outside(site: Site, enterprises: frozenset[str]) -> set[str]:
    """Every enterprise, source, tank and sensor id that belongs to other enterprises."""
    out: set[str] = set()
    for ent in site.enterprises:
        if ent.id in enterprises:
            continue
        out.add(ent.id)
        for src in ent.hazard_sources:
            out.add(src.id)
            out.update(t.id for t in src.tanks)
    out.update(s.sensor.id for s in site.sensors if s.enterprise_id not in enterprises)
    return out


def strings_in(data: Any) -> set[str]:
    """Every string value anywhere in a JSON document."""
    found: set[str] = set()
    if isinstance(data, str):
        found.add(data)
    elif isinstance(data, dict):
        for v in data.values():
            found |= strings_in(v)
    elif isinstance(data, list):
        for v in data:
            found |= strings_in(v)
    return found
