"""Bulletins tankwatch issues itself: when a day, week or month ends, the park's (and its county's) bulletin of it is
issued and kept, and from a daily one each enterprise below the online-rate target is evidence and an
``ONLINE_RATE_LOW`` warning that escalates like the other routines' warnings."""

from __future__ import annotations

from dataclasses import replace

from alarms.bulletins import (
    Bulletin,
    BulletinStore,
    NothingMeasured,
    Period,
    PeriodKind,
    ScopeKind,
    Sources,
    compute,
    local_day,
    period_of,
)
from alarms.credibility import Evidence
from alarms.routines import RoutineWarning, raised_and_returned
from tankwatch.config import Site
from tankwatch.records import stable_id
from tankwatch.site import BulletinPolicy

ONLINE_RATE_LOW = "ONLINE_RATE_LOW"  # the escalation condition of an enterprise below the target over a day
ISSUER = "tankwatch"  # issued_by of the bulletins tankwatch issues itself


def last_ended(kind: PeriodKind, now_ms: int, timezone: str) -> Period:
    """The period of ``kind`` that ended most recently at ``now_ms``."""
    current = period_of(kind, local_day(now_ms, timezone), timezone)
    return period_of(kind, local_day(current.start_ms - 1, timezone), timezone)


class BulletinWatch:
    """Issues each configured bulletin once its period has ended (periods that ended before watching began are
    left to a regulator)."""

    def __init__(self, site: Site, policy: BulletinPolicy, timezone: str, sources: Sources, store: BulletinStore):
        self.site, self.policy, self.timezone, self.sources, self.store = site, policy, timezone, sources, store
        self.every_s = policy.check_every_s
        park = site.file.park
        self.enterprises = frozenset(e.id for e in site.enterprises)
        self.scopes: list[tuple[ScopeKind, str, str]] = [("park", park.id, park.name)]
        if park.county:
            self.scopes.append(("county", park.county, park.county))
        self.started_ms = 0
        self.issued: set[tuple[str, str]] = set()  # (period kind, label)

    def start(self, now_ms: int) -> None:
        """Periods ending from now on are issued."""
        self.started_ms = now_ms

    def poll(self, now_ms: int) -> list[RoutineWarning]:
        """Issue what has ended; warnings from the park's new daily bulletin."""
        warnings: list[RoutineWarning] = []
        for kind in self.policy.issue:
            period = last_ended(kind, now_ms, self.timezone)
            if period.end_ms <= self.started_ms or (kind, period.label) in self.issued:
                continue
            self.issued.add((kind, period.label))
            try:
                park = compute(self.site, self.policy, self.scopes[0], self.enterprises, period, now_ms, ISSUER,
                               self.sources)
            except NothingMeasured:
                continue
            park_id = self.store.add(park)
            for scope_kind, scope_id, name in self.scopes[1:]:  # the county: this site's enterprises, the same table
                self.store.add(replace(park, scope_kind=scope_kind, scope_id=scope_id, scope_name=name))
            if kind == "daily" and self.policy.warn_below_target:
                warnings += self._below_target(park, park_id, now_ms)
        return warnings

    def _below_target(self, bulletin: Bulletin, bulletin_id: int, now_ms: int) -> list[RoutineWarning]:
        out = []
        day = bulletin.period.label
        for row in bulletin.rows:
            if row.meets_target is not False:
                continue
            source = self.site.first_source(row.enterprise_id)
            wid = stable_id("evidence", "online_rate_low", row.enterprise_id, day)
            evidence = Evidence(
                wid, "online_rate_low", row.enterprise_id, source, None, bulletin.period.start_ms,
                bulletin.period.end_ms, now_ms,
                f"{row.enterprise_name} {day} 测点在线率 {row.online_rate_percent}%，"
                f"低于目标 {bulletin.target_percent}%",
                f"{row.enterprise_id} {day}: online rate {row.online_rate_percent}% below the target "
                f"{bulletin.target_percent}%",
                {"day": day, "online_rate_percent": row.online_rate_percent, "target_percent": bulletin.target_percent,
                 "bulletin_id": bulletin_id, "quality_violations": row.quality_violations},
            )
            out.append(RoutineWarning(evidence, raised_and_returned(wid, ONLINE_RATE_LOW, row.enterprise_id, source,
                                                                    now_ms)))
        return out
