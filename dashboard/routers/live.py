"""Websocket /ws/live: a snapshot of latest readings and active alarms, then live readings and events — all limited
to the enterprises the caller may see."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from dashboard.live import CLOSE_UNAUTHENTICATED, Revoked
from dashboard.routers.deps import HubDep
from tankwatch import metrics
from tankwatch.auth import Auth, InvalidToken, Principal

router = APIRouter(tags=["live"])

AUTH_TIMEOUT_S = 10.0


async def _first_message_token(ws: WebSocket) -> str | None:
    """The token of a first message ``{"type": "auth", "token": "…"}``, or None."""
    try:
        text = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT_S)
        message = json.loads(text)
    except (TimeoutError, ValueError, KeyError):
        return None
    if isinstance(message, dict) and message.get("type") == "auth" and isinstance(message.get("token"), str):
        return message["token"]
    return None


@router.websocket("/ws/live")
async def live(
    ws: WebSocket,
    hub: HubDep,
    token: Annotated[str | None, Query(max_length=4096, description="bearer token (or the first message)")] = None,
) -> None:
    """Authenticate (``?token=`` or a first ``{"type":"auth","token":…}`` message), then ``snapshot``,
    ``readings`` (≤ 1/s, changed sensors only) and ``events`` of the caller's enterprises; the token and scope are
    re-checked every few seconds and on user changes (revoked: an error message, then close code 4401)."""
    auth: Auth = ws.app.state.auth
    await ws.accept()
    try:
        if token is None:
            token = await _first_message_token(ws)
        principal: Principal = auth.authenticate(token)
    except InvalidToken as exc:
        metrics.INPUT_REJECTED.labels("dashboard", "unauthenticated").inc()
        await ws.send_text(json.dumps({"type": "error", "status": 401, "detail": str(exc)}, ensure_ascii=False))
        await ws.close(code=CLOSE_UNAUTHENTICATED, reason="not authenticated")
        return
    except WebSocketDisconnect:
        return

    def recheck() -> frozenset[str]:
        try:
            return auth.authenticate(token).enterprises
        except InvalidToken as exc:
            raise Revoked(str(exc)) from None

    await hub.connect(ws, principal.enterprises, recheck)
    try:
        while True:
            # The client only ever sends keep-alives; reading is how a disconnect becomes visible.
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
    finally:
        hub.disconnect(ws)
