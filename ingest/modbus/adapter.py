"""Modbus TCP source: one supervised connection per (host, port), one poller per device (unit id)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from ingest.modbus.plan import DEFAULT_MAX_GAP, DevicePlan, plan_site
from tankwatch.clock import Clock
from tankwatch.config import Site
from tankwatch.metrics import DEVICE_FAILURES, DEVICE_UP, INPUT_REJECTED, READINGS_IN
from tankwatch.records import Quality, ReadingBatch
from tankwatch.site import RegisterTable
from tankwatch.stages import Emit

log = logging.getLogger(__name__)

ADAPTER = "modbus"
STAGE = "ingest.modbus"

_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


@dataclass(frozen=True)
class Backoff:
    """Capped exponential reconnect delays with jitter, so that many adapters do not reconnect in lockstep."""

    initial_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after the ``attempt``-th failed connect in a row (1-based), jittered."""
        base = min(self.max_s, self.initial_s * 2.0 ** (attempt - 1))
        return base * rng.uniform(0.5, 1.0)


class ReadFailed(Exception):
    """A read that produced no registers; ``connection`` tells whether the whole connection is unusable."""

    def __init__(self, message: str, connection: bool) -> None:
        super().__init__(message)
        self.connection = connection


class ModbusConnection:
    """One TCP client and one lock for a (host, port), shared by every unit id behind it; reconnects lazily.

    A connect is attempted only when a poll needs the connection and the backoff since the last failed connect
    has passed; until then reads fail at once, so devices keep reporting comm-fail at their own pace. Polls of
    other unit ids wait for a connect in progress (bounded by the timeout) rather than report a failure that
    is not theirs.
    """

    def __init__(
        self, host: str, port: int, timeout_s: float, clock: Clock, backoff: Backoff, rng: random.Random
    ) -> None:
        self.host, self.port = host, port
        self.clock = clock
        self.backoff = backoff
        self.rng = rng
        self.lock = asyncio.Lock()
        # reconnect_delay=0 turns pymodbus' own reconnect task off: the backoff here is the only one.
        self.client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0)
        self.failed_connects = 0
        self.next_connect_ms = 0

    @property
    def label(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"

    async def read(self, table: RegisterTable, start: int, count: int, unit_id: int) -> list[int]:
        """Registers ``start .. start+count-1`` of one unit's table; raises ReadFailed."""
        async with self.lock:
            await self._ensure_connected()
            try:
                if table == RegisterTable.HOLDING:
                    response = await self.client.read_holding_registers(start, count=count, device_id=unit_id)
                else:
                    response = await self.client.read_input_registers(start, count=count, device_id=unit_id)
            except (TimeoutError, ModbusException, OSError) as exc:
                lost = not self.client.connected
                # A reply that comes after the timeout would be read as the answer to the next request on this
                # socket, perhaps another unit's: the socket goes, and the next read connects afresh.
                self.client.close()
                raise ReadFailed(
                    f"{self.label} unit {unit_id} {table} {start}+{count}: {exc}", lost
                ) from None
            if getattr(response, "dev_id", unit_id) != unit_id:
                self.client.close()
                INPUT_REJECTED.labels(STAGE, "mismatched_response").inc()
                raise ReadFailed(f"{self.label} unit {unit_id} {table} {start}+{count}: the reply came from unit "
                                 f"{response.dev_id}", False)
        where = f"{self.label} unit {unit_id} {table} {start}+{count}"
        if response.isError():
            code = getattr(response, "exception_code", None)
            raise ReadFailed(f"{where}: exception {code} ({_EXCEPTION_NAMES.get(code, 'unknown')})", False)
        registers = list(response.registers)
        if len(registers) != count:
            INPUT_REJECTED.labels(STAGE, "short_response").inc()
            raise ReadFailed(f"{where}: got {len(registers)} registers, asked for {count}", False)
        return registers

    async def _ensure_connected(self) -> None:
        """Connect if needed and allowed by the backoff; raises ReadFailed otherwise."""
        if self.client.connected:
            return
        now = self.clock.now_ms()
        if now < self.next_connect_ms:
            wait = (self.next_connect_ms - now) / 1000
            raise ReadFailed(f"{self.label}: connection down, next attempt in {wait:.1f} s", True)
        try:
            ok = await self.client.connect()
        except (TimeoutError, ModbusException, OSError):
            ok = False
        if ok:
            if self.failed_connects:  # closes the failure DeviceState logged: WARNING, the CLI's default level
                log.warning("modbus %s: connected again after %d failed attempts", self.label, self.failed_connects)
            self.failed_connects = 0
            self.next_connect_ms = 0
            return
        self.failed_connects += 1
        delay = self.backoff.delay(self.failed_connects, self.rng)
        self.next_connect_ms = self.clock.now_ms() + round(delay * 1000)
        raise ReadFailed(
            f"{self.label}: cannot connect (attempt {self.failed_connects}, next in {delay:.1f} s)", True
        )

    def close(self) -> None:
        """Close the TCP client."""
        self.client.close()


class DeviceState:
    """What is known about one device's health, for stats() and for quiet logging."""

    def __init__(self, plan: DevicePlan) -> None:
        self.plan = plan
        self.state = "starting"
        self.failures = 0
        self.consecutive_failures = 0
        self.last_ok_ms: int | None = None
        self.last_error: str | None = None

    def record(self, errors: list[str], now_ms: int) -> None:
        """Update state, counters and logs after a poll: first failure ERROR, repeats DEBUG, recovery WARNING."""
        device = self.plan.device_id
        if errors:
            self.failures += 1
            self.consecutive_failures += 1
            self.last_error = "; ".join(errors)
            DEVICE_FAILURES.labels(device).inc()
            DEVICE_UP.labels(device).set(0)
            if self.state != "failing":
                log.error("modbus device %s failing: %s", device, self.last_error)
            else:
                log.debug(
                    "modbus device %s still failing (%d): %s",
                    device,
                    self.consecutive_failures,
                    self.last_error,
                )
            self.state = "failing"
            return
        if self.state == "failing":  # at WARNING like the failure, so the default log shows the outage's end
            log.warning("modbus device %s recovered after %d failed polls", device, self.consecutive_failures)
        self.state = "up"
        self.consecutive_failures = 0
        self.last_ok_ms = now_ms
        DEVICE_UP.labels(device).set(1)

    def as_dict(self) -> dict[str, object]:
        """Plain mapping for APIs."""
        host, port = self.plan.connection
        return {
            "state": self.state,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_ok_ms": self.last_ok_ms,
            "last_error": self.last_error,
            "connection": f"{host}:{port}",
            "unit_id": self.plan.modbus.unit_id,
        }


async def poll_device(
    plan: DevicePlan, connection: ModbusConnection, clock: Clock
) -> tuple[ReadingBatch, list[str]]:
    """Read every block of a device once: a batch of all its sensors, comm-fail rows where a read failed."""
    sensors = plan.sensors
    n = len(sensors)
    value = np.full(n, np.nan, dtype=np.float64)
    quality = np.full(n, Quality.COMM_FAIL, dtype=np.uint8)
    ts_ms = np.zeros(n, dtype=np.int64)
    errors: list[str] = []
    row = 0
    for block in plan.blocks:
        rows = slice(row, row + len(block.sensors))
        row = rows.stop
        try:
            registers = await connection.read(block.table, block.start, block.count, plan.modbus.unit_id)
        except ReadFailed as exc:
            errors.append(str(exc))
            ts_ms[rows] = clock.now_ms()
            if exc.connection:
                ts_ms[row:] = ts_ms[rows.start]  # the other blocks cannot be read either
                break
            continue
        ts_ms[rows] = clock.now_ms()
        value[rows] = block.decoder.decode(registers)
        quality[rows] = Quality.GOOD
    return ReadingBatch(sensors, ts_ms, value, quality), errors


class ModbusSource:
    """Polls the site's Modbus devices, each at its own pace; failures become comm-fail rows, never gaps."""

    name = ADAPTER

    def __init__(
        self,
        site: Site,
        clock: Clock,
        device_ids: Sequence[str] | None = None,
        *,
        backoff: Backoff | None = None,
        max_gap: int = DEFAULT_MAX_GAP,
        rng: random.Random | None = None,
    ) -> None:
        self.site = site
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.plans = plan_site(site, device_ids, max_gap)
        self._states = {p.device_id: DeviceState(p) for p in self.plans}

    def stats(self) -> dict[str, dict[str, object]]:
        """Per device: state (starting/up/failing), failures, consecutive_failures, last_ok_ms, last_error."""
        return {device: state.as_dict() for device, state in self._states.items()}

    async def run(self, emit: Emit) -> None:
        """Poll until cancelled; closes every connection on the way out."""
        connections: dict[tuple[str, int], ModbusConnection] = {}
        for plan in self.plans:
            if plan.connection not in connections:
                # One client per (host, port): its timeout is the longest any device on it asks for.
                timeout = max(p.modbus.timeout_s for p in self.plans if p.connection == plan.connection)
                host, port = plan.connection
                connections[plan.connection] = ModbusConnection(
                    host, port, timeout, self.clock, self.backoff, self.rng
                )
        try:
            async with asyncio.TaskGroup() as group:
                for plan in self.plans:
                    group.create_task(
                        self._poll_forever(plan, connections[plan.connection], emit),
                        name=f"modbus:{plan.device_id}",
                    )
        finally:
            for connection in connections.values():
                connection.close()

    async def _poll_forever(self, plan: DevicePlan, connection: ModbusConnection, emit: Emit) -> None:
        """Poll one device on a fixed grid of its poll interval; missed slots are skipped, never burst."""
        state = self._states[plan.device_id]
        interval_ms = max(1, round(plan.modbus.poll_interval_s * 1000))
        next_ms = self.clock.now_ms()
        readings = READINGS_IN.labels(ADAPTER)
        task = asyncio.current_task()
        while True:
            batch, errors = await poll_device(plan, connection, self.clock)
            if task is not None and task.cancelling():
                # asyncio.wait_for inside pymodbus can swallow a cancel that races a reply (Python 3.11)
                raise asyncio.CancelledError
            state.record(errors, self.clock.now_ms())
            await emit(batch)
            readings.inc(len(batch))
            next_ms += interval_ms
            now = self.clock.now_ms()
            if next_ms < now:
                next_ms += math.ceil((now - next_ms) / interval_ms) * interval_ms
            await self.clock.sleep((next_ms - now) / 1000)
