"""GET /api/grades: red/yellow/green (特别管控/重点关注/一般监管) of hazard sources and enterprises, park counts."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from dashboard.routers.deps import AUTH_RESPONSES, ErrorOut, ScopeDep

router = APIRouter(tags=["grades"])

Colour = Literal["green", "yellow", "red"]


class ReasonOut(BaseModel):
    """A rule that matched: its texts, where the rule comes from, and what showed it."""

    rule_id: str
    colour: Colour
    text_zh: str
    text_en: str
    source: str
    details: list[str]
    line: str


class SubjectGradeOut(BaseModel):
    """A hazard source's or enterprise's grade with every reason that matched."""

    kind: Literal["source", "enterprise"]
    subject_id: str
    enterprise_id: str
    colour: Colour
    colour_zh: str
    ts_ms: int
    level: int | None
    reasons: list[ReasonOut]


class TransitionOut(BaseModel):
    """A colour change (the first grading of each subject is its baseline, from null)."""

    model_config = ConfigDict(populate_by_name=True)

    kind: Literal["source", "enterprise"]
    subject_id: str
    from_: Colour | None = Field(default=None, alias="from")
    to: Colour
    ts_ms: int
    reasons: list[str]


class CountsOut(BaseModel):
    """How many subjects have each colour."""

    green: int
    yellow: int
    red: int


class GradesOut(BaseModel):
    """The latest grading within the caller's scope."""

    ts_ms: int | None
    sources: list[SubjectGradeOut]
    enterprises: list[SubjectGradeOut]
    counts: dict[Literal["source", "enterprise"], CountsOut]
    transitions: list[TransitionOut]


def _counts(items: list[SubjectGradeOut]) -> CountsOut:
    return CountsOut(**{c: sum(1 for g in items if g.colour == c) for c in ("green", "yellow", "red")})


@router.get(
    "/api/grades",
    response_model=GradesOut,
    responses={**AUTH_RESPONSES, 503: {"model": ErrorOut, "description": "The grading stage is not running"}},
)
def grades(request: Request, scope: ScopeDep) -> GradesOut:
    """Grades of the hazard sources and enterprises the caller may see, their reasons and recent changes."""
    stage = getattr(request.app.state, "grading", None)
    if stage is None:
        raise HTTPException(503, "grading stage not running (app.state.grading is not set)")
    snap = stage.current()
    subjects = [SubjectGradeOut(**s.to_dict()) for s in snap.subjects if scope.allows(s.enterprise_id)]
    sources = [s for s in subjects if s.kind == "source"]
    enterprises = [s for s in subjects if s.kind == "enterprise"]
    allowed_subjects = {(s.kind, s.subject_id) for s in subjects}
    transitions = [
        TransitionOut(**t)
        for t in snap.transitions
        if (t["kind"], t["subject_id"]) in allowed_subjects
    ]
    return GradesOut(
        ts_ms=snap.ts_ms,
        sources=sources,
        enterprises=enterprises,
        counts={"source": _counts(sources), "enterprise": _counts(enterprises)},
        transitions=transitions,
    )
