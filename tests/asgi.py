"""A FastAPI app served by uvicorn on a real 127.0.0.1 port inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn

from dashboard.app import server_config


@contextlib.asynccontextmanager
async def serve(app, stop_timeout_s: float = 10.0, port: int = 0) -> AsyncIterator[int]:  # noqa: ANN001 - an ASGI app
    """Run the app with the dashboard's uvicorn settings on 127.0.0.1 (a free port when 0) in this loop; yields the
    port."""
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, stop_timeout_s)
