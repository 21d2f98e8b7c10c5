"""GET /api/audit: the append-only journal of what people did, for admins and regulators within their scope;
GET /api/audit/verify: the chain check, for admins."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from dashboard.routers.deps import AUTH_RESPONSES, OVERSIGHT_ROLES, AuditDep, ScopeDep, iso_utc, require_roles
from dashboard.routers.readings import TimeParam
from tankwatch.site import Role

router = APIRouter(tags=["audit"])



class AuditEntryOut(BaseModel):
    """One journal entry: who, when, what, to what, from where."""

    seq: int
    ts_ms: int
    time: str | None
    actor: str
    role: str | None
    action: str
    target_kind: str
    target_id: str
    enterprise_id: str | None  # null: park-wide (logins, user changes)
    remote: str | None
    detail: dict[str, Any]
    hash: str


class AuditOut(BaseModel):
    """Entries newest first."""

    count: int
    entries: list[AuditEntryOut]


@router.get(
    "/api/audit", response_model=AuditOut, responses=AUTH_RESPONSES, dependencies=[require_roles(*OVERSIGHT_ROLES)]
)
def audit(
    scope: ScopeDep,
    journal: AuditDep,
    start: TimeParam = None,
    end: TimeParam = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. alarm.ack, escalation.close")] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    target_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> AuditOut:
    """Entries of the enterprises in scope (and park-wide ones: logins, user changes), newest first."""
    # parse_time_ms ran as the parameters' validator, so start/end already hold epoch ms here.
    rows = journal.entries(
        enterprise_ids=scope.enterprises,
        include_park_wide=bool(scope.enterprises),
        since_ms=start,  # type: ignore[arg-type]
        until_ms=end,  # type: ignore[arg-type]
        action=action,
        actor=actor,
        target_id=target_id,
        limit=limit,
    )
    entries = [AuditEntryOut(**asdict(e), time=iso_utc(e.ts_ms)) for e in rows]
    return AuditOut(count=len(entries), entries=entries)



class ChainCheckOut(BaseModel):
    """The journal's chain walked from the first entry: intact, or the first entry that breaks it and why."""

    ok: bool
    entries: int  # entries checked before the first broken one (all when ok)
    legacy_entries: int  # unkeyed SHA-256 entries from before the audit key
    broken_seq: int | None
    reason: str | None


@router.get(
    "/api/audit/verify",
    response_model=ChainCheckOut,
    responses=AUTH_RESPONSES,
    dependencies=[require_roles(Role.ADMIN)],
)
async def verify(journal: AuditDep, allow_legacy: bool = False) -> ChainCheckOut:
    """Walk the whole chain with the audit key (as ``tankwatch audit verify`` does); admins only. ``allow_legacy``
    accepts the unkeyed entries of a journal begun before the audit key."""
    check = await run_in_threadpool(lambda: journal.verify(allow_legacy=allow_legacy))
    return ChainCheckOut(
        ok=check.ok,
        entries=check.entries,
        legacy_entries=check.legacy,
        broken_seq=check.broken_seq,
        reason=check.reason,
    )
