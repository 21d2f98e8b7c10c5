"""Refusals a person reads on the page: an HTTP error with a stable code and the reason in English and Chinese."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tankwatch import metrics
from tankwatch.lifecycle import Refusal


class RefusalOut(BaseModel):
    """Why an operation was refused: ``detail`` in English, ``detail_zh`` in Chinese and ``code`` for programs
    (a route's plain errors of the same status carry ``detail`` alone)."""

    detail: str
    detail_zh: str | None = None
    code: str | None = None


class InvalidRequestOut(BaseModel):
    """A request the schema refuses: one entry per field that is wrong."""

    detail: list[dict[str, Any]]


# A 422 is either a refusal (a request the policy refuses) or a schema error (one the model refuses).
Unprocessable = RefusalOut | InvalidRequestOut


class Refused(HTTPException):
    """An operation refused with a bilingual reason (answered by :func:`refused_handler`)."""

    def __init__(self, status: int, refusal: Refusal) -> None:
        super().__init__(status, refusal.en)
        self.refusal = refusal
        metrics.INPUT_REJECTED.labels("dashboard", refusal.code).inc()


async def refused_handler(request: Request, exc: Exception) -> JSONResponse:
    """The refusal's reason in both languages (and its code)."""
    assert isinstance(exc, Refused)
    body = RefusalOut(detail=exc.refusal.en, detail_zh=exc.refusal.zh, code=exc.refusal.code)
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=exc.headers)
