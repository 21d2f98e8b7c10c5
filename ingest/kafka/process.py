"""A Kafka device's topic read and decoded in a child process: it sends each poll's readings to the parent and
commits a poll's offsets only when the parent says it has taken them, so at-least-once holds across the two."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.process
from multiprocessing.connection import Connection
from typing import Any

from ingest.child import join_or_terminate
from ingest.kafka.topic import TopicReader
from ingest.mqtt.payload import Decoded, DeviceRoute
from tankwatch.clock import SystemClock
from tankwatch.gc_tuning import tune_for_streaming
from tankwatch.site import Device

AHEAD = 2  # polls a decode process sends before the parent has taken the first: it reads one while one is evaluated

# Child → parent: ("state", consuming, error) | ("read", number, Decoded); parent → child: ("taken", number) | "stop".
Message = tuple[Any, ...]


def _serve(device: Device, route: DeviceRoute, client_id: str, recheck_ms: int, conn: Connection) -> None:
    """Child process: read the topic until the parent says stop or goes away."""
    tune_for_streaming()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_Child(device, route, client_id, recheck_ms, conn).run())


class _Child:
    """The child's side: a TopicReader whose polls go down the pipe, taken when the parent acknowledges them."""

    def __init__(self, device: Device, route: DeviceRoute, client_id: str, recheck_ms: int, conn: Connection) -> None:
        self.conn = conn
        self.reader = TopicReader(device, route, SystemClock(), client_id, self._state, recheck_ms=recheck_ms)
        self.sent = 0
        self.unacked: dict[int, asyncio.Future[None]] = {}
        self.acked = asyncio.Event()
        self.done = asyncio.Event()

    async def run(self) -> None:
        """Read until told to stop; a failure of the reader itself ends the process (the parent starts another)."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._receive)
        reading = asyncio.create_task(self.reader.run(self._deliver))
        stopping = asyncio.create_task(self.done.wait())
        try:
            await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(self.conn.fileno())
            for task in (reading, stopping):
                task.cancel()
            await asyncio.gather(reading, stopping, return_exceptions=True)  # the reader commits what was taken
        if not reading.cancelled() and (error := reading.exception()) is not None:
            raise error

    def _state(self, consuming: bool, error: str) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("state", consuming, error))

    async def _deliver(self, decoded: Decoded) -> asyncio.Future[None]:
        """Send a poll's readings, waiting first while AHEAD polls are not yet taken."""
        while len(self.unacked) >= AHEAD:
            self.acked.clear()
            await self.acked.wait()
        self.sent += 1
        taken = asyncio.get_running_loop().create_future()
        self.unacked[self.sent] = taken
        self.conn.send(("read", self.sent, decoded))
        return taken

    def _receive(self) -> None:
        """The parent wrote: a poll taken, or stop (also when it is gone)."""
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            message = "stop"
        if message == "stop":
            self.done.set()
            return
        _, number = message
        self.unacked.pop(number).set_result(None)
        self.acked.set()


class DecodeProcess:
    """The parent's side of one device's decode process: start, receive, acknowledge, stop."""

    def __init__(self, device: Device, route: DeviceRoute, client_id: str, recheck_ms: int) -> None:
        self.args = (device, route, client_id, recheck_ms)
        self.name = f"tankwatch-kafka-decode-{device.id}"
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()

    def start(self) -> None:
        """Start the child and listen to its end of the pipe on the running loop."""
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        parent, child = ctx.Pipe(duplex=True)
        self._conn = parent
        self._process = ctx.Process(target=_serve, args=(*self.args, child), daemon=True, name=self.name)
        self._process.start()
        child.close()
        asyncio.get_running_loop().add_reader(parent.fileno(), self._readable)

    def _readable(self) -> None:
        """One message from the child (its writes are whole messages, so this waits only for the rest of one);
        None once it is gone."""
        assert self._conn is not None
        try:
            message: Message | None = self._conn.recv()
        except (EOFError, OSError):
            message = None
            asyncio.get_running_loop().remove_reader(self._conn.fileno())
        self._inbox.put_nowait(message)

    async def receive(self) -> Message | None:
        """The child's next message; None when it has exited."""
        return await self._inbox.get()

    def taken(self, number: int) -> None:
        """Tell the child that poll ``number`` was taken (its offsets may be committed)."""
        assert self._conn is not None
        with contextlib.suppress(OSError):
            self._conn.send(("taken", number))

    async def stop(self) -> None:
        """Ask the child to stop (it commits what was taken) and wait for it (terminated if it does not exit)."""
        process, conn = self._process, self._conn
        self._process = None
        if process is None or conn is None:
            return
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
        with contextlib.suppress(OSError):
            conn.send("stop")
        await asyncio.to_thread(join_or_terminate, process)
        conn.close()

