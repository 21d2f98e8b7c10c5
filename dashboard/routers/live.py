"""Websocket /ws/live: a snapshot of latest readings and active alarms, then live readings and events."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from dashboard.routers.deps import HubDep

router = APIRouter(tags=["live"])


@router.websocket("/ws/live")
async def live(ws: WebSocket, hub: HubDep) -> None:
    """Messages: ``snapshot`` first, then ``readings`` (≤ 1/s, changed sensors only) and ``events``."""
    await ws.accept()
    await hub.connect(ws)
    try:
        while True:
            # The client only ever sends keep-alives; reading is how a disconnect becomes visible.
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
    finally:
        hub.disconnect(ws)
