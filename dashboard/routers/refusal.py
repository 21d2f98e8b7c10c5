"""Refusals a person reads on the page: an HTTP error with a stable code and the reason in English and Chinese."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from alarms.lifecycle import Refusal
from tankwatch import metrics


class RefusalOut(BaseModel):
    """Why an operation was refused: ``detail`` in English, ``detail_zh`` in Chinese, ``code`` for programs."""

    detail: str
    detail_zh: str
    code: str


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
