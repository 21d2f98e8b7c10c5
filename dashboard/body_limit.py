"""Request-body limits enforced before anything parses a body: by Content-Length at once, by counting otherwise."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tankwatch import metrics


def too_large(limit: int) -> str:
    """The 413 message (and the rejection is counted)."""
    metrics.INPUT_REJECTED.labels("dashboard", "body_too_large").inc()
    return f"request body exceeds the limit of {limit} bytes for this route"


class BodyTooLarge(HTTPException):
    """A request body past its route's limit (413); raised from ``receive`` while a route reads a streamed body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


class BodyLimitMiddleware:
    """Pure ASGI middleware: a declared Content-Length over the limit is answered 413 without reading the body;
    a body without one (chunked) is counted as it arrives and refused the moment it passes the limit."""

    def __init__(self, app: ASGIApp, limit: int, limit_by_path: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.limit_by_path = dict(limit_by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_by_path.get(scope["path"], self.limit)
        declared = _content_length(scope)
        if declared is not None and not 0 <= declared <= limit:
            if declared < 0:
                metrics.INPUT_REJECTED.labels("dashboard", "bad_content_length").inc()
                await _refuse(scope, receive, send, 400, "Content-Length is not a non-negative whole number")
                return
            await _refuse(scope, receive, send, 413, too_large(limit))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; -1 when the header is there but not a number, None when absent."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    """Answer without reading the body; the server closes the connection rather than drain it."""
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)
