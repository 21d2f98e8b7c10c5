"""Modbus TCP servers that expose a site's Modbus devices exactly as their register maps declare them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tankwatch.config import Site
from tankwatch.registers import encode_point
from tankwatch.site import ModbusDevice, RegisterPoint, RegisterTable

log = logging.getLogger(__name__)

FUNCTION_CODE = {RegisterTable.HOLDING: 3, RegisterTable.INPUT: 4}
# A gateway whose field device is gone answers "gateway target device failed to respond" (0x0B).
OFFLINE_EXCEPTION = ExcCodes.GATEWAY_NO_RESPONSE
_CLIENT_WRITE_CODES = frozenset({5, 6, 15, 16, 22, 23})


@dataclass(frozen=True)
class ModbusFaultSpec:
    """How a device misbehaves on the wire.

    ``exception``: every client request is answered with exception ``code``; ``timeout``: every answer is
    ``delay_s`` late (past a client's timeout, the way an overloaded gateway behaves); ``byte_order``: the device
    writes its values with the words (16-bit types: the bytes) of each point swapped, a firmware or
    configuration mismatch the reader cannot see.
    """

    kind: Literal["exception", "timeout", "byte_order"]
    code: int = 4
    delay_s: float = 3.0
    sensors: frozenset[str] | None = None  # byte_order: only these points (None: every point)

    def __post_init__(self) -> None:
        if self.kind == "exception" and self.code not in {c.value for c in ExcCodes}:
            known = sorted(c.value for c in ExcCodes)
            raise ValueError(f"Modbus exception code {self.code} is not one pymodbus can send (known: {known})")
        if not self.delay_s > 0:
            raise ValueError(f"delay_s must be positive, got {self.delay_s}")


class DeviceRefused(Exception):
    """A simulated device answered a read with a Modbus exception code."""

    def __init__(self, device_id: str, code: int) -> None:
        super().__init__(f"device {device_id} answered with exception {code}")
        self.code = code


class DeviceSilent(Exception):
    """A simulated device did not answer in time."""


def wrong_order(point: RegisterPoint) -> str:
    """The byte order a misconfigured device would use for ``point``: words reversed (bytes for 16-bit)."""
    order = point.byte_order
    if len(order) == 2:
        return order[::-1]
    words = [order[i : i + 2] for i in range(0, len(order), 2)]
    return "".join(reversed(words))


@dataclass(eq=False)
class _Unit:
    """One simulated device: its map, a mirror of its registers, whether it answers and how it misbehaves."""

    device_id: str
    config: ModbusDevice
    endpoint: tuple[str, int]
    online: bool = True
    fault: ModbusFaultSpec | None = None
    # Mirror of each table, written to the server as one block per table so a 32-bit value is never torn.
    tables: dict[RegisterTable, list[int]] = field(default_factory=dict)
    points: dict[str, RegisterPoint] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)  # the engineering values last written

    async def action(
        self, func_code: int, start: int, address: int, count: int, registers: list[int], values: list | None
    ) -> ExcCodes | None:
        """pymodbus hook on every access: an offline unit refuses requests from clients; faults apply."""
        # Our own updates arrive as read codes (3/4) carrying values; clients read without values or write
        # with write codes, so the simulator keeps its registers current while the unit is "offline".
        own_update = values is not None and func_code not in _CLIENT_WRITE_CODES
        if own_update:
            return None
        if not self.online:
            return OFFLINE_EXCEPTION
        if self.fault is not None and self.fault.kind == "exception":
            return ExcCodes(self.fault.code)
        if self.fault is not None and self.fault.kind == "timeout":
            await asyncio.sleep(self.fault.delay_s)
        return None

    def encode(self, sensor_id: str, value: float) -> None:
        """Put one value into the mirror, in the wrong order while a byte-order fault is in force."""
        point = self.points[sensor_id]
        fault = self.fault
        if fault is not None and fault.kind == "byte_order" and (fault.sensors is None or sensor_id in fault.sensors):
            point = point.model_copy(update={"order": wrong_order(point)})
        registers = encode_point(point, value)
        self.tables[point.table][point.address : point.address + len(registers)] = registers
        self.values[sensor_id] = value

    def sim_device(self) -> SimDevice:
        """The pymodbus device: separate holding and input blocks of exactly the declared sizes."""

        def block(size: int) -> list[SimData]:
            if size == 0:  # pymodbus needs a block per table; one invalid register makes every read illegal
                return [SimData(0, count=1, datatype=DataType.INVALID)]
            return [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)]

        no_bits = [SimData(0, count=1, values=False, datatype=DataType.BITS)]  # the maps declare no coils
        return SimDevice(
            self.config.unit_id,
            simdata=(
                no_bits,
                list(no_bits),
                block(self.config.holding_registers),
                block(self.config.input_registers),
            ),
            action=self.action,
        )


class ModbusSimServer:
    """Serves every Modbus device of a site; one TCP server per distinct host:port (or all on the override)."""

    def __init__(self, site: Site, host: str | None = None, port: int | None = None) -> None:
        self.site = site
        self._units: dict[str, _Unit] = {}
        self._endpoints: dict[tuple[str, int], list[_Unit]] = {}
        self._servers: dict[tuple[str, int], ModbusTcpServer] = {}
        self._bound: dict[tuple[str, int], tuple[str, int]] = {}
        self._sensor_unit: dict[str, _Unit] = {}
        for dev in site.devices:
            if dev.modbus is None:
                continue
            endpoint = (host or dev.modbus.host, dev.modbus.port if port is None else port)
            unit = _Unit(dev.id, dev.modbus, endpoint)
            unit.tables = {
                RegisterTable.HOLDING: [0] * dev.modbus.holding_registers,
                RegisterTable.INPUT: [0] * dev.modbus.input_registers,
            }
            unit.points = {p.sensor: p for p in dev.modbus.points}
            taken = {u.config.unit_id: u.device_id for u in self._endpoints.get(endpoint, [])}
            if dev.modbus.unit_id in taken:
                raise ValueError(
                    f"devices {taken[dev.modbus.unit_id]!r} and {dev.id!r} would share unit id "
                    f"{dev.modbus.unit_id} on {endpoint[0]}:{endpoint[1]}"
                )
            self._endpoints.setdefault(endpoint, []).append(unit)
            self._units[dev.id] = unit
            self._sensor_unit.update({p.sensor: unit for p in dev.modbus.points})

    @property
    def device_ids(self) -> list[str]:
        """Ids of the devices this server simulates."""
        return list(self._units)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) each server listens on (after start: the real port for a port-0 bind)."""
        return [self._bound.get(ep, ep) for ep in self._endpoints]

    @property
    def address(self) -> tuple[str, int]:
        """The single (host, port) served; ValueError when devices span several."""
        if len(self._endpoints) != 1:
            raise ValueError(f"devices are served on {len(self._endpoints)} endpoints: {self.addresses}")
        return self.addresses[0]

    def address_of(self, device_id: str) -> tuple[str, int]:
        """Where a device is served."""
        endpoint = self._unit(device_id).endpoint
        return self._bound.get(endpoint, endpoint)

    async def start(self) -> None:
        """Bind and serve every endpoint in the background."""
        try:
            for endpoint, units in self._endpoints.items():
                server = ModbusTcpServer([u.sim_device() for u in units], address=endpoint)
                await server.serve_forever(background=True)
                self._servers[endpoint] = server
                sockets = getattr(server.transport, "sockets", None) or []
                self._bound[endpoint] = (endpoint[0], sockets[0].getsockname()[1]) if sockets else endpoint
                log.info("Modbus simulator serving %d device(s) on %s:%d", len(units), *self._bound[endpoint])
            for units in self._endpoints.values():
                for unit in units:
                    await self._flush(unit)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close every server."""
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            await server.shutdown()

    def set_online(self, device_id: str, online: bool) -> None:
        """Offline: the unit answers every request with exception 0x0B; its registers keep updating."""
        self._unit(device_id).online = online

    def is_online(self, device_id: str) -> bool:
        """Whether the unit answers."""
        return self._unit(device_id).online

    async def write(self, values: Mapping[str, float]) -> None:
        """Encode engineering values into the registers of the points that carry them.

        Sensors that no Modbus device of this server reads are ignored, so a caller may pass every reading.
        """
        for device_id in self.write_local(values):
            await self._flush(self._units[device_id])

    def write_local(self, values: Mapping[str, float]) -> set[str]:
        """Encode values into the register mirrors only (no server I/O); returns the devices touched."""
        touched: set[str] = set()
        for sensor_id, value in values.items():
            unit = self._sensor_unit.get(sensor_id)
            if unit is None:
                continue
            unit.encode(sensor_id, value)
            touched.add(unit.device_id)
        return touched

    def set_fault(self, device_id: str, fault: ModbusFaultSpec | None) -> None:
        """Start (or with None end) a wire fault; the mirror is re-encoded at the next write."""
        unit = self._unit(device_id)
        if fault is not None and fault.sensors is not None and (stray := sorted(fault.sensors - set(unit.points))):
            raise KeyError(f"device {device_id} has no points for sensors {stray}")
        unit.fault = fault
        for sensor_id, value in list(unit.values.items()):
            unit.encode(sensor_id, value)

    def fault_of(self, device_id: str) -> ModbusFaultSpec | None:
        """The fault in force on a device, if any."""
        return self._unit(device_id).fault

    def read_local(self, device_id: str, table: RegisterTable, start: int, count: int) -> list[int]:
        """What a client's read would get, without the network: registers, DeviceRefused or DeviceSilent."""
        unit = self._unit(device_id)
        if not unit.online:
            raise DeviceRefused(device_id, OFFLINE_EXCEPTION.value)
        if unit.fault is not None and unit.fault.kind == "exception":
            raise DeviceRefused(device_id, unit.fault.code)
        if unit.fault is not None and unit.fault.kind == "timeout":
            raise DeviceSilent(f"device {device_id} answers {unit.fault.delay_s} s late")
        registers = unit.tables[table]
        if start < 0 or start + count > len(registers):
            raise DeviceRefused(device_id, ExcCodes.ILLEGAL_ADDRESS.value)
        return list(registers[start : start + count])

    async def _flush(self, unit: _Unit) -> None:
        """Copy a unit's mirror into its server."""
        server = self._servers.get(unit.endpoint)
        if server is None:
            return  # not started: the mirror is written on start
        for table, registers in unit.tables.items():
            if registers:
                await server.async_setValues(unit.config.unit_id, FUNCTION_CODE[table], 0, registers)

    def _unit(self, device_id: str) -> _Unit:
        try:
            return self._units[device_id]
        except KeyError:
            raise KeyError(f"no Modbus device {device_id!r} on this simulator") from None
