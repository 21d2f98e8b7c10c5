"""The receiver over TCP: ``@@``-framed messages in, ``@@``-framed acknowledgements out on the same connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from tankwatch import metrics
from tiers.codec import escape_at
from tiers.framing import FrameTooLarge, frame, read_frames
from tiers.receiver import ReceiverCore

log = logging.getLogger(__name__)


class TcpReceiver:
    """An asyncio TCP server; each connection's messages are answered in the order they came."""

    def __init__(self, core: ReceiverCore, host: str, port: int, max_connections: int = 1000,
                 idle_timeout_s: float = 600.0) -> None:
        self.core, self.host, self.port = core, host, port
        self.max_connections, self.idle_timeout_s = max_connections, idle_timeout_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket | None = None) -> int:
        """Listen (on ``sock`` when given, already bound); returns the port (the bound one when ``port`` is 0)."""
        if sock is not None:
            self._server = await asyncio.start_server(self._serve, sock=sock)
        else:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_connections:
            metrics.INPUT_REJECTED.labels("receiver", "too_many_connections").inc()
            log.warning("receiver: refused a connection from %s: %d open already", peer, len(self._connections))
            writer.close()
            return
        self._connections.add(task)
        try:
            async for item in read_frames(reader, self.core.limits.max_message_bytes, self.idle_timeout_s):
                if isinstance(item, FrameTooLarge):
                    ack = self.core.too_large(peer)
                else:
                    ack = await self.core.handle(item, peer)
                writer.write(frame(escape_at(ack.to_json())))
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("receiver: connection from %s ended: %s", peer, exc)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
