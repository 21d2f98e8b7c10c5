"""Sender transports: HTTP POST ``{base}/{serviceId}`` (httpx) and ``@@``-framed TCP (asyncio streams)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import httpx
from pydantic import ValidationError

from tiers.acks import Ack
from tiers.framing import FrameTooLarge, frame, read_frames

log = logging.getLogger(__name__)
MAX_ACK_BYTES = 64 * 1024


class TransportError(Exception):
    """No acknowledgement came back: the connection failed or dropped, or the answer was not an acknowledgement."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Transport(Protocol):
    """Carries one message to the receiver and returns its acknowledgement."""

    async def send(self, service: str, message: bytes, data_id: str) -> Ack:
        """Send and wait for the acknowledgement of ``data_id`` (the caller bounds the wait)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _ack_from(body: bytes, what: str) -> Ack:
    try:
        return Ack.model_validate_json(body)
    except ValidationError:
        raise TransportError("bad_answer", f"{what} is not an acknowledgement: {body[:200]!r}") from None


class HttpTransport:
    """POST each message to ``{base_url}/{serviceId}``; the body of the answer is the acknowledgement."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    async def send(self, service: str, message: bytes, data_id: str) -> Ack:
        """One POST; any HTTP status whose body is an acknowledgement counts as an answer."""
        try:
            response = await self._client.post(f"{self.base_url}/{service}", content=message,
                                               headers={"Content-Type": "application/json"})
        except httpx.TimeoutException as exc:
            raise TransportError("timeout", str(exc) or type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise TransportError("connection", str(exc) or type(exc).__name__) from None
        return _ack_from(response.content, f"HTTP {response.status_code} answer")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class TcpTransport:
    """One TCP connection, opened on demand; messages are pipelined and acknowledgements matched by dataId."""

    def __init__(self, host: str, port: int, connect_timeout_s: float) -> None:
        self.host, self.port, self.connect_timeout_s = host, port, connect_timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self._connecting = asyncio.Lock()

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                        self.connect_timeout_s)
            except (OSError, TimeoutError) as exc:
                raise TransportError("connection", f"{self.host}:{self.port}: {exc or 'timed out'}") from None
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_acks(reader, writer))
            return writer

    async def _read_acks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Resolve pending sends from the acknowledgement frames; fail them all when the connection ends."""
        why = "connection closed by the receiver"
        try:
            async for item in read_frames(reader, MAX_ACK_BYTES):
                if isinstance(item, FrameTooLarge):
                    why = f"an answer frame exceeded {item.limit} bytes"
                    break
                try:
                    ack = _ack_from(item, "TCP frame")
                except TransportError as exc:
                    log.warning("uplink %s:%d: %s", self.host, self.port, exc)
                    continue
                waiter = self._pending.get(ack.dataId or "")
                if waiter is not None and not waiter.done():
                    waiter.set_result(ack)
                elif ack.dataId is None:
                    log.warning("uplink %s:%d: acknowledgement without dataId: code %d %s", self.host, self.port,
                                ack.code, ack.message)
        except (OSError, asyncio.IncompleteReadError) as exc:
            why = f"connection failed: {exc}"
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(TransportError("dropped", why))

    async def send(self, service: str, message: bytes, data_id: str) -> Ack:
        """Write the frame and wait for the acknowledgement naming ``data_id``."""
        writer = await self._connection()
        waiter: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[data_id] = waiter
        try:
            try:
                writer.write(frame(message))
                await writer.drain()
            except OSError as exc:
                writer.close()
                raise TransportError("dropped", f"write failed: {exc}") from None
            return await waiter
        finally:
            if self._pending.get(data_id) is waiter:
                del self._pending[data_id]

    async def aclose(self) -> None:
        """Close the connection and stop reading."""
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
