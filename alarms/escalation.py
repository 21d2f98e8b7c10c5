"""Escalation from the control room to regulators: a route tree and timers from the site file, inhibition, per-level
acknowledgement, regulator sign (签收) / disposition (处置反馈) / close (消警), reminders, persisted in SQL.

Default chain, each step firing when nobody has acknowledged within the previous step's timer:
on-duty operator (dashboard, sound) → 操作负责人 → 技术负责人 → 主要负责人 → park regulator → county regulator.
The default timers below are tankwatch's defaults, not a regulation; a site sets its own in ``escalation.route``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.types import BigInteger

from alarms.notify import Dispatcher, Notification
from alarms.rules import PRIORITIES
from tankwatch import bus as topics
from tankwatch import metrics
from tankwatch.auth import Principal, allowed_enterprises
from tankwatch.bus import Bus
from tankwatch.clock import Clock, ticks
from tankwatch.config import Site
from tankwatch.lifecycle import LATCHED_NOTE
from tankwatch.records import AlarmAction, AlarmEvent
from tankwatch.site import AlarmMatchers, EscalationConfig, EscalationRoute, InhibitRule, Role
from tankwatch.stages import cancel_all
from tankwatch.stores.events import metadata
from tankwatch.stores.users import UserStore

DEFAULT_STEPS: tuple[str, ...] = (
    "operator",
    "operational",
    "technical",
    "principal",
    "park_regulator",
    "county_regulator",
)
STEP_LEVEL = {
    "operator": "enterprise",
    "operational": "enterprise",
    "technical": "enterprise",
    "principal": "enterprise",
    "park_regulator": "park",
    "county_regulator": "county",
}
LEVELS = ("enterprise", "park", "county")
REGULATOR_LEVEL = {Role.PARK_REGULATOR: "park", Role.COUNTY_REGULATOR: "county"}
ENTERPRISE_ROLES = frozenset({Role.OPERATOR, Role.SAFETY_MANAGER})

# Minutes at each step before the next fires, by alarm priority: our defaults, not regulation.
DEFAULT_TIMERS_MIN: dict[str, tuple[float, ...]] = {
    "critical": (5, 10, 15, 30, 60),
    "high": (10, 15, 30, 60, 120),
    "medium": (15, 30, 60, 120, 240),
    "low": (30, 60, 120, 240, 480),
}
DEFAULT_REPEAT_MIN = 10.0

# Reason codes a regulator closes an escalation with (消警原因).
CLOSE_REASONS: dict[str, str] = {
    "handled": "已处置",
    "false_alarm": "误报",
    "equipment_fault": "设备故障",
    "maintenance": "检修作业",
    "test": "测试",
}

# A device's comm-loss (the alarm core's COMM) mutes the stale-data alarms of its other sensors.
DEFAULT_INHIBIT = (
    InhibitRule(
        source=AlarmMatchers(condition=["COMM"]),
        target=AlarmMatchers(condition=["DQ"], quality=["stale"]),
        equal=["device"],
    ),
)

MINUTE_MS = 60_000


class EscalationError(Exception):
    """An escalation action that cannot be done; ``status`` is the HTTP status that fits."""

    status = 409


class EscalationNotFound(EscalationError):
    """No such escalation in the caller's scope."""

    status = 404


class EscalationForbidden(EscalationError):
    """The caller's role may not do this."""

    status = 403


class EscalationConfigError(ValueError):
    """An escalation section that cannot work, naming the field."""


# ----- routes ---------------------------------------------------------------------------------------------


def matches(matchers: AlarmMatchers, labels: dict[str, Any]) -> bool:
    """Every given matcher has the alarm's label among its values."""
    return all(labels.get(name) in wanted for name, wanted in matchers.model_dump(exclude_none=True).items())


@dataclass(frozen=True)
class ResolvedRoute:
    """A route with everything inherited filled in."""

    id: str
    matchers: AlarmMatchers
    steps: tuple[str, ...]
    timers_min: dict[str, tuple[float, ...]]
    repeat_ms: int
    receivers: tuple[str, ...]
    continue_matching: bool
    children: tuple[ResolvedRoute, ...] = ()

    def timers_ms(self, priority: str) -> tuple[int, ...]:
        """Wait at each step (all but the last) for an alarm of this priority."""
        minutes = self.timers_min.get(priority) or self.timers_min.get("default") or DEFAULT_TIMERS_MIN["low"]
        return tuple(round(m * MINUTE_MS) for m in minutes[: len(self.steps) - 1])


def resolve_routes(config: EscalationConfig, receiver_ids: Collection[str]) -> ResolvedRoute:
    """The route tree with inheritance applied; EscalationConfigError names a bad route."""

    def build(node: EscalationRoute, parent: ResolvedRoute | None, path: str) -> ResolvedRoute:
        steps = tuple(node.steps) if node.steps is not None else (parent.steps if parent else DEFAULT_STEPS)
        timers = dict(parent.timers_min) if parent else dict(DEFAULT_TIMERS_MIN)
        if node.timers_min is not None:
            timers.update({k: tuple(v) for k, v in node.timers_min.items()})
        for priority, minutes in timers.items():
            if len(minutes) < len(steps) - 1:
                raise EscalationConfigError(
                    f"{path}.timers_min.{priority}: {len(steps)} steps need {len(steps) - 1} timers, got {len(minutes)}"
                )
        receivers = tuple(node.receivers) if node.receivers is not None else (parent.receivers if parent else ())
        unknown = sorted(set(receivers) - set(receiver_ids))
        if unknown:
            raise EscalationConfigError(f"{path}.receivers: unknown receiver ids {unknown}")
        if node.repeat_interval_min is not None:
            repeat_ms = round(node.repeat_interval_min * MINUTE_MS)
        else:
            repeat_ms = parent.repeat_ms if parent else round(DEFAULT_REPEAT_MIN * MINUTE_MS)
        me = ResolvedRoute(
            id=node.id or path,
            matchers=node.match,
            steps=steps,
            timers_min=timers,
            repeat_ms=repeat_ms,
            receivers=receivers,
            continue_matching=node.continue_matching,
        )
        children = tuple(build(child, me, f"{path}.routes[{i}]") for i, child in enumerate(node.routes))
        return ResolvedRoute(**{**me.__dict__, "children": children})

    return build(config.route, None, "escalation.route")


def match_routes(route: ResolvedRoute, labels: dict[str, Any]) -> list[ResolvedRoute]:
    """Routes an alarm takes: depth-first, first matching child wins unless it says ``continue``."""
    if not matches(route.matchers, labels):
        return []
    found: list[ResolvedRoute] = []
    for child in route.children:
        hit = match_routes(child, labels)
        if hit:
            found.extend(hit)
            if not child.continue_matching:
                break
    return found or [route]


def muted_by(rules: Iterable[InhibitRule], labels: dict[str, Any], active: dict[str, dict[str, Any]]) -> str | None:
    """The id of an active alarm that inhibits one with ``labels``, or None."""
    me = labels.get("occurrence_id")
    for rule in rules:
        if not matches(rule.target, labels):
            continue
        for occurrence_id, other in active.items():
            if occurrence_id == me or not matches(rule.source, other):
                continue
            if all(labels.get(k) is not None and labels.get(k) == other.get(k) for k in rule.equal):
                return occurrence_id
    return None


# ----- state ----------------------------------------------------------------------------------------------

escalations = Table(
    "escalations",
    metadata,
    Column("escalation_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),  # open | closed
    Column("enterprise_id", String(64), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("raised_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("data", Text, nullable=False),  # the whole Escalation as JSON
    Index("ix_escalations_state", "state", "enterprise_id"),
)

dispositions = Table(
    "escalation_dispositions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("escalation_id", String(64), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("login", String(64), nullable=False),
    Column("level", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Index("ix_dispositions_escalation", "escalation_id"),
)


@dataclass
class LevelState:
    """One organisation level of one escalation: when it was told, reminded, and who acknowledged or signed."""

    notified_ms: int | None = None
    reminded_ms: int | None = None
    reminders: int = 0
    acked_ms: int | None = None
    acked_by: str | None = None
    note: str | None = None


@dataclass
class Escalation:
    """The escalation of one alarm occurrence."""

    escalation_id: str
    labels: dict[str, Any]  # occurrence_id, sensor, condition, priority, enterprise, source, quality, device, tank…
    route_id: str
    steps: tuple[str, ...]
    timers_ms: tuple[int, ...]
    repeat_ms: int
    receivers: tuple[str, ...]
    raised_ms: int
    step: int = -1  # index of the last step that fired; -1 while muted before the first
    step_ms: int | None = None  # when the current step's timer started
    # Stops at the first acknowledgement (or sign, or regulator close) only: an alarm that returned to normal
    # unacknowledged, or that is latched, keeps climbing until somebody answers for it.
    climbing: bool = True
    inhibited_by: str | None = None
    paused: bool = False  # the alarm is shelved or suppressed
    alarm_active: bool = True
    latched: bool = False  # a gas alarm whose condition returned, held until an operator resets it
    cleared_ms: int | None = None
    levels: dict[str, LevelState] = field(default_factory=dict)
    steps_fired: dict[str, int] = field(default_factory=dict)  # step name → when it fired
    closed_ms: int | None = None  # regulator close (消警)
    closed_by: str | None = None
    close_level: str | None = None
    close_reason: str | None = None
    close_note: str | None = None
    state: str = "open"  # open | closed

    @property
    def enterprise_id(self) -> str:
        """The enterprise whose alarm this is."""
        return self.labels["enterprise"]

    @property
    def regulator_notified(self) -> bool:
        """Whether a regulator level has been told."""
        return any(self.levels.get(lv) and self.levels[lv].notified_ms is not None for lv in ("park", "county"))

    @property
    def acknowledged(self) -> bool:
        """Whether any level has acknowledged (or signed)."""
        return any(lv.acked_ms is not None for lv in self.levels.values())

    @property
    def regulator_signed(self) -> bool:
        """Whether a regulator level has signed (签收)."""
        return any(self.levels.get(lv) and self.levels[lv].acked_ms is not None for lv in ("park", "county"))

    @property
    def back_to_normal(self) -> bool:
        """The alarm's condition has returned and it is not held latched."""
        return not self.alarm_active and not self.latched

    @property
    def at_top(self) -> bool:
        """The last step of the chain has fired."""
        return self.step >= len(self.steps) - 1

    def next_step_ms(self) -> int | None:
        """When the next step fires if nobody acknowledges, or None when it will not.

        Whether the alarm is still active does not matter: only an acknowledgement stops the climb.
        """
        if not self.climbing or self.inhibited_by or self.paused or self.step_ms is None:
            return None
        if self.step < 0 or self.at_top:
            return None
        return self.step_ms + self.timers_ms[self.step]

    @property
    def overdue(self) -> bool:
        """A step's deadline passed with nobody acknowledging (the chain went past its first step)."""
        return self.state == "open" and self.step >= 1 and not self.acknowledged and self.closed_ms is None

    def status(self) -> str:
        """Where the escalation stands, as a regulator reads it.

        open (升级中: nobody answered yet) | acknowledged (企业已确认) | signed (监管已签收) |
        awaiting_close (待消警: a regulator was told and the alarm is back to normal) |
        awaiting_clear (已消警, 待报警恢复) | closed (已消警: a regulator closed it) |
        resolved (企业已确认且已恢复: ended within the enterprise, no regulator involved) |
        lapsed (returned while shelved or suppressed, nobody having acknowledged: ended, nothing left to answer).
        """
        if self.state == "closed":
            if self.closed_ms is not None:
                return "closed"
            return "resolved" if self.acknowledged else "lapsed"
        if self.closed_ms is not None:
            return "awaiting_clear"
        if self.back_to_normal and self.regulator_notified:
            return "awaiting_close"
        if self.regulator_signed:
            return "signed"
        return "acknowledged" if self.acknowledged else "open"

    def to_json(self) -> str:
        """Serialised for the store."""
        data = dict(self.__dict__)
        data["levels"] = {k: v.__dict__ for k, v in self.levels.items()}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Escalation:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        data["levels"] = {k: LevelState(**v) for k, v in data["levels"].items()}
        for key in ("steps", "timers_ms", "receivers"):
            data[key] = tuple(data[key])
        return cls(**data)


def urgency(e: Escalation) -> tuple[int, int, int, str]:
    """Sort key of the regulator's inbox: open before ended, then priority (critical first), then age (oldest
    first), so a critical alarm is never buried under a pile of lesser ones."""
    rank = PRIORITIES.index(e.labels["priority"]) if e.labels.get("priority") in PRIORITIES else -1
    ended = e.state == "closed"
    return (int(ended), -rank, -e.raised_ms if ended else e.raised_ms, e.escalation_id)


@dataclass(frozen=True)
class Disposition:
    """A disposition record (处置反馈)."""

    id: int
    escalation_id: str
    ts_ms: int
    login: str
    level: str
    text: str


class EscalationStore:
    """Escalations and dispositions in SQL (the same database as the events)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[escalations, dispositions])

    def save(self, items: Iterable[Escalation], now_ms: int) -> None:
        """Write escalations (replacing their previous rows)."""
        rows = [
            {
                "escalation_id": e.escalation_id,
                "state": e.state,
                "enterprise_id": e.enterprise_id,
                "source_id": e.labels["source"],
                "raised_ms": e.raised_ms,
                "updated_ms": now_ms,
                "data": e.to_json(),
            }
            for e in items
        ]
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(escalations).where(escalations.c.escalation_id.in_([r["escalation_id"] for r in rows])))
            conn.execute(escalations.insert(), rows)

    def load(
        self, *, state: str | None = "open", enterprise_ids: Collection[str] | None = None, limit: int | None = None
    ) -> list[Escalation]:
        """Escalations newest first, optionally by state and enterprise."""
        c = escalations.c
        query = select(c.data).order_by(c.raised_ms.desc(), c.escalation_id)
        if state is not None:
            query = query.where(c.state == state)
        if enterprise_ids is not None:
            query = query.where(c.enterprise_id.in_(list(enterprise_ids)))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [Escalation.from_json(text) for text in conn.scalars(query)]

    def get(self, escalation_id: str) -> Escalation | None:
        """One escalation by id."""
        with self.engine.connect() as conn:
            text = conn.scalar(select(escalations.c.data).where(escalations.c.escalation_id == escalation_id))
        return None if text is None else Escalation.from_json(text)

    def add_disposition(self, escalation_id: str, ts_ms: int, login: str, level: str, text: str) -> Disposition:
        """Append a disposition record."""
        with self.engine.begin() as conn:
            new_id = conn.execute(
                dispositions.insert().values(
                    escalation_id=escalation_id, ts_ms=ts_ms, login=login, level=level, text=text, deleted=False
                )
            ).inserted_primary_key[0]
        return Disposition(int(new_id), escalation_id, ts_ms, login, level, text)

    def dispositions(self, escalation_id: str) -> list[Disposition]:
        """Disposition records of an escalation, oldest first."""
        c = dispositions.c
        query = select(dispositions).where(c.escalation_id == escalation_id).order_by(c.ts_ms, c.id)
        with self.engine.connect() as conn:
            return [
                Disposition(r["id"], r["escalation_id"], r["ts_ms"], r["login"], r["level"], r["text"])
                for r in conn.execute(query).mappings()
            ]


# ----- who may do what, in which state (the engine, and a dashboard that sends the action to it) -------------


def enterprise_role(principal: Principal) -> None:
    """EscalationForbidden unless the caller acknowledges for an enterprise."""
    if principal.role not in ENTERPRISE_ROLES:
        raise EscalationForbidden(f"role {principal.role.value} acknowledges by signing, not here")


def regulator_level(principal: Principal) -> str:
    """The level a regulator acts at (EscalationForbidden for other roles)."""
    level = REGULATOR_LEVEL.get(principal.role)
    if level is None:
        raise EscalationForbidden(f"only park and county regulators may do this, not {principal.role.value}")
    return level


def scoped(e: Escalation | None, escalation_id: str, principal: Principal, *, open_only: bool) -> Escalation:
    """The escalation if the caller may see it (EscalationNotFound) and, with ``open_only``, it is open."""
    if e is None or e.enterprise_id not in principal.enterprises:
        raise EscalationNotFound(f"no escalation {escalation_id!r}")
    if open_only and e.state == "closed":
        raise EscalationError(f"escalation {escalation_id} is closed")
    return e


def check_acknowledge(e: Escalation) -> None:
    """EscalationError when the enterprise level has acknowledged already."""
    lv = e.levels.get("enterprise")
    if lv is not None and lv.acked_ms is not None:
        raise EscalationError(f"already acknowledged by {lv.acked_by}")


def check_sign(e: Escalation, level: str) -> None:
    """EscalationError unless the level was told and has not signed yet."""
    lv = e.levels.get(level)
    if lv is None or lv.notified_ms is None:
        raise EscalationError(f"not escalated to the {level} level yet")
    if lv.acked_ms is not None:
        raise EscalationError(f"already signed at the {level} level by {lv.acked_by}")


def check_dispose(e: Escalation, level: str) -> None:
    """EscalationError unless the level has signed."""
    lv = e.levels.get(level)
    if lv is None or lv.acked_ms is None:
        raise EscalationError(f"sign (签收) at the {level} level before recording a disposition")


def check_close(e: Escalation, level: str, reason: str, disposed: bool) -> None:
    """EscalationError unless the reason is known, it is not closed yet, the level signed and a disposition is
    on record."""
    if reason not in CLOSE_REASONS:
        raise EscalationError(f"unknown reason {reason!r}; use one of {', '.join(CLOSE_REASONS)}")
    if e.closed_ms is not None:
        raise EscalationError(f"already closed by {e.closed_by}; waiting for the alarm to return to normal")
    lv = e.levels.get(level)
    if lv is None or lv.acked_ms is None:
        raise EscalationError(f"sign (签收) at the {level} level before closing")
    if not disposed:
        raise EscalationError("record the disposition (处置反馈) before closing")


# ----- engine ---------------------------------------------------------------------------------------------


class EscalationEngine:
    """Turns alarm events and clock ticks into escalation steps, reminders and notifications; thread-safe."""

    def __init__(
        self,
        site: Site,
        clock: Clock,
        store: EscalationStore,
        *,
        notifier: Dispatcher | None = None,
        grade_of: Callable[[str], str | None] | None = None,
        users: UserStore | None = None,
        enterprises: Collection[str] | None = None,
    ) -> None:
        """``enterprises``: escalate the alarms of these only (an alarm worker's; see :meth:`adopt`), or all."""
        self.site = site
        self.clock = clock
        self.store = store
        self.notifier = notifier
        self.grade_of = grade_of or (lambda _source_id: None)
        self.users = users or UserStore(store.engine)
        # Told of every regulator close (消警) with its dispositions once it is stored (the uplink sends it up).
        self.on_close: Callable[[Escalation, list[Disposition]], None] | None = None
        config = site.file.escalation
        self.route = resolve_routes(config, {r.id for r in config.receivers})
        self.inhibit = tuple(config.inhibit) if config.inhibit is not None else DEFAULT_INHIBIT
        self._check_matchers()
        self._sources = {src.id: (ent, src) for ent, src in site.sources()}
        self._lock = threading.RLock()
        self._open: dict[str, Escalation] = {
            e.escalation_id: e for e in store.load(state="open", enterprise_ids=enterprises)
        }

    def _check_matchers(self) -> None:
        """Matchers naming enterprises or sources the site lacks are configuration errors."""
        ents = {e.id for e in self.site.enterprises}
        srcs = {s.id for _, s in self.site.sources()}

        def walk(route: ResolvedRoute) -> Iterable[tuple[str, AlarmMatchers]]:
            yield route.id, route.matchers
            for child in route.children:
                yield from walk(child)

        pairs = list(walk(self.route)) + [(f"escalation.inhibit[{i}]", r.source) for i, r in enumerate(self.inhibit)]
        pairs += [(f"escalation.inhibit[{i}]", r.target) for i, r in enumerate(self.inhibit)]
        for where, m in pairs:
            bad = sorted(set(m.enterprise or ()) - ents) + sorted(set(m.source or ()) - srcs)
            if bad:
                raise EscalationConfigError(f"{where}.match: unknown enterprise or source ids {bad}")

    def adopt(self, enterprise_ids: Collection[str]) -> None:
        """Take over these enterprises' open escalations from the store, as another worker left them."""
        with self._lock:
            for e in self.store.load(state="open", enterprise_ids=list(enterprise_ids)):
                self._open[e.escalation_id] = e

    def release(self, enterprise_ids: Collection[str]) -> None:
        """Let these enterprises' escalations go (every change is in the store already)."""
        with self._lock:
            self._open = {k: e for k, e in self._open.items() if e.enterprise_id not in enterprise_ids}

    # ----- inputs ------------------------------------------------------------------------------------------

    def labels_of(self, event: AlarmEvent) -> dict[str, Any]:
        """What routes and inhibition rules match on, plus what messages show."""
        info = self.site.sensor(event.sensor_id) if self.site.has_sensor(event.sensor_id) else None
        ent, src = self._sources.get(event.source_id, (None, None))
        return {
            "occurrence_id": event.occurrence_id,
            "sensor": event.sensor_id,
            "condition": event.condition,
            "priority": event.priority,
            "enterprise": event.enterprise_id,
            "source": event.source_id,
            "grade": self.grade_of(event.source_id),
            "quality": event.note if event.condition == "DQ" else None,
            "device": info.device_id if info else None,
            "tank": info.tank_id if info else None,
            "value": event.value if event.value is None or event.value == event.value else None,
            "limit": event.limit,
            "unit": info.sensor.unit if info else None,
            "sensor_name": (info.sensor.name or info.sensor.id) if info else event.sensor_id,
            "enterprise_name": ent.name if ent else event.enterprise_id,
            "source_name": src.name if src else event.source_id,
        }

    def on_events(self, events: Iterable[AlarmEvent]) -> list[Notification]:
        """Apply alarm events (raised, acknowledged, cleared, shelved…); returns the notifications they cause."""
        notes: list[Notification] = []
        changed: dict[str, Escalation] = {}
        with self._lock:
            for ev in events:
                if not isinstance(ev, AlarmEvent):
                    continue
                for e in self._apply(ev, notes):
                    changed[e.escalation_id] = e
            self._persist(changed.values(), notes)
        return notes

    def _apply(self, ev: AlarmEvent, notes: list[Notification]) -> list[Escalation]:
        e = self._open.get(ev.occurrence_id)
        if ev.action is AlarmAction.RAISED:
            if e is not None or self.store.get(ev.occurrence_id) is not None:
                return []  # redelivered
            return self._raise(ev, notes)
        if e is None:
            return []
        if ev.action in (AlarmAction.ACKNOWLEDGED, AlarmAction.RESET):  # a reset implies acknowledgement
            if ev.action is AlarmAction.RESET:
                e.latched = False
            self._ack_level(e, "enterprise", ev.user or "?", ev.ts_ms, ev.note, notes)
            self._maybe_close(e, ev.ts_ms, notes)
        elif ev.action is AlarmAction.CLEARED:
            # The condition returned; the climb goes on until somebody acknowledges (a latched gas alarm, or one
            # that returned unacknowledged, still needs a person).
            e.alarm_active = False
            e.latched = ev.note == LATCHED_NOTE
            e.cleared_ms = ev.ts_ms
            notes.append(self._note(e, "cleared", ev.ts_ms, levels=self._notified_levels(e)))
            released = self._release_inhibited(ev.occurrence_id, ev.ts_ms, notes)
            self._maybe_close(e, ev.ts_ms, notes)
            return [e, *released]
        elif ev.action in (AlarmAction.SHELVED, AlarmAction.SUPPRESSED):
            e.paused = True
        elif ev.action in (AlarmAction.UNSHELVED, AlarmAction.UNSUPPRESSED):
            e.paused = False
            e.step_ms = ev.ts_ms  # the timer starts again when the alarm is back in view
        else:
            return []
        return [e]

    def _raise(self, ev: AlarmEvent, notes: list[Notification]) -> list[Escalation]:
        labels = self.labels_of(ev)
        routes = match_routes(self.route, labels)
        if not routes:
            return []
        first = routes[0]
        receivers = tuple(dict.fromkeys(r for route in routes for r in route.receivers))
        e = Escalation(
            escalation_id=ev.occurrence_id,
            labels=labels,
            route_id=first.id,
            steps=first.steps,
            timers_ms=first.timers_ms(ev.priority),
            repeat_ms=first.repeat_ms,
            receivers=receivers,
            raised_ms=ev.ts_ms,
        )
        active = self._active_labels()
        e.inhibited_by = muted_by(self.inhibit, labels, active)
        self._open[e.escalation_id] = e
        changed = [e]
        if e.inhibited_by is None:
            self._fire(e, 0, ev.ts_ms, notes)
        # The new alarm may mute alarms already escalating.
        for other in self._open.values():
            if other is e or not other.alarm_active or other.inhibited_by is not None:
                continue
            if muted_by(self.inhibit, other.labels, {e.escalation_id: labels}) is not None:
                other.inhibited_by = e.escalation_id
                changed.append(other)
        return changed

    def _active_labels(self) -> dict[str, dict[str, Any]]:
        return {k: e.labels for k, e in self._open.items() if e.alarm_active}

    def _release_inhibited(self, occurrence_id: str, ts_ms: int, notes: list[Notification]) -> list[Escalation]:
        """Escalations muted by an alarm that cleared start (or restart their timer) now."""
        released = []
        for e in self._open.values():
            if e.inhibited_by != occurrence_id:
                continue
            e.inhibited_by = muted_by(self.inhibit, e.labels, self._active_labels())
            if e.inhibited_by is None and e.climbing:
                if e.step < 0:
                    self._fire(e, 0, ts_ms, notes)
                else:
                    e.step_ms = ts_ms
            released.append(e)
        return released

    def tick(self, now_ms: int | None = None) -> list[Notification]:
        """Fire every step and reminder due by ``now_ms`` (default: the clock); returns the notifications."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        notes: list[Notification] = []
        changed = []
        with self._lock:
            for e in list(self._open.values()):
                before = len(notes)
                self._fire_due(e, now, notes)
                self._remind(e, now, notes)
                if len(notes) > before:
                    changed.append(e)
            self._persist(changed, notes)
        return notes

    # ----- steps, reminders, closing --------------------------------------------------------------------------

    def _fire_due(self, e: Escalation, ts_ms: int, notes: list[Notification]) -> None:
        """Fire the steps due by ``ts_ms``."""
        while (due := e.next_step_ms()) is not None and due <= ts_ms:
            self._fire(e, e.step + 1, due, notes)

    def _fire(self, e: Escalation, index: int, ts_ms: int, notes: list[Notification]) -> None:
        step = e.steps[index]
        level = STEP_LEVEL[step]
        e.step = index
        e.step_ms = ts_ms
        e.steps_fired[step] = ts_ms
        lv = e.levels.setdefault(level, LevelState())
        if lv.notified_ms is None:
            lv.notified_ms = ts_ms
        lv.reminded_ms = ts_ms
        kind = "raised" if index == 0 else "escalated"
        notes.append(
            self._note(e, kind, ts_ms, levels=(level,), steps=(step,), sound=step == "operator", key_part=step)
        )

    def _remind(self, e: Escalation, now: int, notes: list[Notification]) -> None:
        if e.inhibited_by or e.paused or e.closed_ms is not None or e.state == "closed":
            return
        for level, lv in e.levels.items():
            if lv.acked_ms is not None or lv.reminded_ms is None:
                continue
            due = lv.reminded_ms + e.repeat_ms
            if due > now:
                continue
            # One reminder however late the tick; the next one is counted from the last interval boundary.
            lv.reminded_ms = due + ((now - due) // e.repeat_ms) * e.repeat_ms
            lv.reminders += 1
            steps = tuple(s for s in e.steps_fired if STEP_LEVEL[s] == level)
            notes.append(
                self._note(
                    e,
                    "reminder",
                    lv.reminded_ms,
                    levels=(level,),
                    steps=steps,
                    sound="operator" in steps,
                    key_part=f"{level}:{lv.reminders}",
                    extra={"reminder_no": lv.reminders},
                )
            )

    def _ack_level(self, e: Escalation, level: str, login: str, ts_ms: int, note: str | None,
                   notes: list[Notification]) -> None:
        """Record an answer at ``ts_ms``; steps due before it fire first, whether or not a tick came between (so the
        chain depends on when things happened, not on the phase of the clock's ticks)."""
        self._fire_due(e, ts_ms, notes)
        lv = e.levels.setdefault(level, LevelState())
        if lv.acked_ms is None:
            lv.acked_ms, lv.acked_by, lv.note = ts_ms, login, note
        e.climbing = False

    def _maybe_close(self, e: Escalation, ts_ms: int, notes: list[Notification]) -> None:
        """Closed once the alarm is back to normal and, if a regulator was told, a regulator closed it.

        Without a regulator, an enterprise acknowledgement is needed too, unless the alarm returned while shelved
        or suppressed: its occurrence then closed in the alarm core without one, and nothing is left to answer.
        """
        if e.state == "closed" or not e.back_to_normal:
            return
        if e.regulator_notified:
            if e.closed_ms is None:
                return
        elif not (e.acknowledged or e.paused or e.closed_ms is not None):
            return
        e.state = "closed"
        self._open.pop(e.escalation_id, None)
        if e.closed_ms is not None:
            notes.append(
                self._note(
                    e,
                    "closed",
                    ts_ms,
                    levels=self._notified_levels(e),
                    extra={"closed_by": e.closed_by, "reason": e.close_reason, "note": e.close_note},
                )
            )

    def _notified_levels(self, e: Escalation) -> tuple[str, ...]:
        return tuple(lv for lv in LEVELS if lv in e.levels and e.levels[lv].notified_ms is not None)

    # ----- recipients and messages ------------------------------------------------------------------------

    def recipients(self, e: Escalation, steps: Iterable[str]) -> tuple[str, ...]:
        """Logins whose dashboard inbox gets a message for these steps."""
        logins: list[str] = []
        ent, src = self._sources.get(e.labels["source"], (None, None))
        users = None
        for step in steps:
            if step in ("operational", "technical", "principal"):
                person = getattr(src.responsible, step) if src else None
                if person is not None and person.user:
                    logins.append(person.user)
                continue
            role = {"operator": Role.OPERATOR, "park_regulator": Role.PARK_REGULATOR}.get(step, Role.COUNTY_REGULATOR)
            users = users if users is not None else self.users.list()
            logins += [
                u.login
                for u in users
                if u.role is role and not u.disabled and e.enterprise_id in allowed_enterprises(u.scope, self.site)
            ]
        return tuple(dict.fromkeys(logins))

    def _person(self, e: Escalation, step: str) -> str | None:
        _, src = self._sources.get(e.labels["source"], (None, None))
        if src is None or step not in ("operational", "technical", "principal"):
            return None
        person = getattr(src.responsible, step)
        return f"{person.name} {person.phone}" if person.phone else person.name

    def _note(
        self,
        e: Escalation,
        kind: str,
        ts_ms: int,
        *,
        levels: tuple[str, ...],
        steps: tuple[str, ...] | None = None,
        sound: bool = False,
        key_part: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Notification:
        if steps is None:
            steps = tuple(s for s in e.steps_fired if STEP_LEVEL[s] in levels)
        last = e.steps[e.step] if e.step >= 0 else None
        step = steps[-1] if steps else last
        context = {
            **{k: v for k, v in e.labels.items() if k not in ("enterprise", "source", "sensor")},
            "escalation_id": e.escalation_id,
            "enterprise_id": e.enterprise_id,
            "source_id": e.labels["source"],
            "sensor_id": e.labels["sensor"],
            "raised_ms": e.raised_ms,
            "step": step,
            "person": self._person(e, step) if step else None,
            **(extra or {}),
        }
        return Notification(
            key=f"{e.escalation_id}:{kind}:{key_part}",
            kind=kind,  # type: ignore[arg-type]
            escalation_id=e.escalation_id,
            enterprise_id=e.enterprise_id,
            level=levels[-1] if levels else "enterprise",
            ts_ms=ts_ms,
            recipients=self.recipients(e, steps),
            receivers=e.receivers,
            sound=sound,
            context=context,
        )

    def _persist(self, changed: Iterable[Escalation], notes: list[Notification]) -> None:
        self.store.save(changed, self.clock.now_ms())
        if self.notifier is not None and notes:
            self.notifier.submit(notes)

    # ----- people's actions ---------------------------------------------------------------------------------

    def _in_scope(self, escalation_id: str, principal: Principal) -> Escalation:
        return scoped(self._open.get(escalation_id) or self.store.get(escalation_id), escalation_id, principal,
                      open_only=False)

    def _open_one(self, escalation_id: str, principal: Principal) -> Escalation:
        e = scoped(self._open.get(escalation_id) or self.store.get(escalation_id), escalation_id, principal,
                   open_only=True)
        return self._open[e.escalation_id]

    def acknowledge(self, escalation_id: str, principal: Principal, note: str | None = None,
                    ts_ms: int | None = None) -> Escalation:
        """An enterprise person acknowledges for the enterprise level (at ``ts_ms``, default now); the climb stops."""
        with self._lock:
            enterprise_role(principal)
            e = self._open_one(escalation_id, principal)
            check_acknowledge(e)
            now = self.clock.now_ms() if ts_ms is None else ts_ms
            notes: list[Notification] = []
            self._ack_level(e, "enterprise", principal.login, now, note, notes)
            self._maybe_close(e, now, notes)
            self._persist([e], notes)
            return e

    def sign(self, escalation_id: str, principal: Principal, note: str | None = None,
             ts_ms: int | None = None) -> Escalation:
        """A regulator signs for the escalation at their level (签收, at ``ts_ms``, default now); the climb stops."""
        with self._lock:
            level = regulator_level(principal)
            e = self._open_one(escalation_id, principal)
            check_sign(e, level)
            notes: list[Notification] = []
            self._ack_level(e, level, principal.login, self.clock.now_ms() if ts_ms is None else ts_ms, note, notes)
            self._persist([e], notes)
            return e

    def dispose(self, escalation_id: str, principal: Principal, text: str) -> Disposition:
        """A regulator who signed records what was done (处置反馈)."""
        with self._lock:
            level = regulator_level(principal)
            e = self._open_one(escalation_id, principal)
            check_dispose(e, level)
            return self.store.add_disposition(e.escalation_id, self.clock.now_ms(), principal.login, level, text)

    def close(self, escalation_id: str, principal: Principal, reason: str, note: str | None = None,
              ts_ms: int | None = None) -> Escalation:
        """A regulator closes (消警) with a reason code (at ``ts_ms``, default now); the escalation ends once the alarm
        is also back to normal."""
        with self._lock:
            level = regulator_level(principal)
            e = self._open_one(escalation_id, principal)
            check_close(e, level, reason, bool(self.store.dispositions(e.escalation_id)))
            now = self.clock.now_ms() if ts_ms is None else ts_ms
            e.closed_ms, e.closed_by, e.close_level, e.close_reason, e.close_note = (
                now,
                principal.login,
                level,
                reason,
                note,
            )
            e.climbing = False
            notes: list[Notification] = []
            self._maybe_close(e, now, notes)
            self._persist([e], notes)
            if self.on_close is not None:
                self.on_close(e, self.store.dispositions(e.escalation_id))
            return e

    # ----- queries --------------------------------------------------------------------------------------------

    def get(self, escalation_id: str, principal: Principal) -> Escalation:
        """One escalation in the caller's scope (EscalationNotFound otherwise)."""
        with self._lock:
            return self._in_scope(escalation_id, principal)

    def list(self, enterprise_ids: Collection[str], state: str = "open", limit: int = 500) -> list[Escalation]:
        """Escalations of these enterprises, most urgent first (see ``urgency``): ``open`` or ``all``.

        ``all`` is every open escalation (never cut off by ``limit``: an old unanswered alarm must not drop out of
        sight behind newer ones) followed by the ``limit`` most recently raised closed ones.
        """
        with self._lock:
            found = [e for e in self._open.values() if e.enterprise_id in enterprise_ids]
        found.sort(key=urgency)
        if state == "open":
            return found[:limit]
        return found + self.store.load(state="closed", enterprise_ids=list(enterprise_ids), limit=limit)

    def overdue(self) -> set[str]:
        """Occurrence ids nobody acknowledged within the first step's timer, not yet closed (grading: red)."""
        with self._lock:
            return {e.escalation_id for e in self._open.values() if e.overdue}

    def is_muted(self, escalation_id: str) -> bool:
        """Whether an escalation is inhibited or its alarm shelved right now (the notifier's inhibit stage)."""
        with self._lock:
            e = self._open.get(escalation_id)
            return e is not None and (e.inhibited_by is not None or e.paused)


class EscalationRunner:
    """Feeds an engine from the bus's events and ticks it on the clock; run ``run()`` as a supervisor task.

    It subscribes when built (before the pipeline starts publishing), so no event is missed.
    """

    GROUP = "escalation"

    def __init__(self, engine: EscalationEngine, bus: Bus, clock: Clock, tick_s: float = 1.0) -> None:
        self.engine = engine
        self.clock = clock
        self.tick_s = tick_s
        self._events = bus.subscribe(topics.EVENTS, self.GROUP)  # back-pressure: escalation must not lose events

    async def run(self) -> None:
        """Consume events and tick until cancelled."""
        tasks = [asyncio.create_task(self._consume()), asyncio.create_task(self._tick())]
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancel_all(tasks)

    async def _consume(self) -> None:
        async for item in self._events:
            events = list(item) if isinstance(item, list | tuple) else [item]
            good = [e for e in events if isinstance(e, AlarmEvent)]
            if len(good) < len(events):
                metrics.INPUT_REJECTED.labels("escalation", "not_an_alarm_event").inc(len(events) - len(good))
            if good:
                await asyncio.to_thread(self.engine.on_events, good)

    async def _tick(self) -> None:
        """Tick every ``tick_s`` of clock time (see ``ticks``)."""
        async for now_ms in ticks(self.clock, self.tick_s):
            await asyncio.to_thread(self.engine.tick, now_ms)
