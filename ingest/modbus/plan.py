"""Poll plans: each Modbus device's points merged once, at load, into the fewest contiguous register reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tankwatch.config import Site
from tankwatch.registers import BlockDecoder
from tankwatch.site import Device, ModbusDevice, RegisterPoint, RegisterTable

MAX_BLOCK_REGISTERS = 125  # Modbus limit for one read of holding/input registers (function codes 3 and 4)
DEFAULT_MAX_GAP = (
    16  # unused registers a read may carry to save a round trip; more than this costs a new read
)


@dataclass(frozen=True)
class ReadBlock:
    """One contiguous read: table, first register, count, its decoder and its points' sensor indices."""

    table: RegisterTable
    start: int
    count: int
    decoder: BlockDecoder
    sensors: np.ndarray  # int32 sensor indices, in the decoder's point order

    @property
    def end(self) -> int:
        """One past the last register read."""
        return self.start + self.count


@dataclass(frozen=True)
class DevicePlan:
    """Everything a poller needs for one Modbus device, computed once."""

    device_id: str
    modbus: ModbusDevice
    blocks: tuple[ReadBlock, ...]

    @property
    def connection(self) -> tuple[str, int]:
        """The (host, port) this device is reached through; devices sharing it share one TCP connection."""
        return self.modbus.host, self.modbus.port

    @property
    def sensors(self) -> np.ndarray:
        """Sensor indices of every point, block after block (the row order of this device's batches)."""
        return np.concatenate([b.sensors for b in self.blocks]).astype(np.int32)


def merge_points(
    points: Iterable[RegisterPoint],
    map_size: int,
    max_gap: int = DEFAULT_MAX_GAP,
    max_registers: int = MAX_BLOCK_REGISTERS,
) -> list[tuple[int, int, list[RegisterPoint]]]:
    """Group one table's points into (start, count, points) reads: greedy, hence the fewest reads.

    A read may span up to ``max_gap`` unused registers between points, never exceeds ``max_registers`` and
    never covers a register outside ``[0, map_size)``, since it only spans from its first point to its last.
    """
    if not 1 <= max_registers <= MAX_BLOCK_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_BLOCK_REGISTERS}, got {max_registers}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    ordered = sorted(points, key=lambda p: p.address)
    blocks: list[tuple[int, int, list[RegisterPoint]]] = []
    start = end = 0
    members: list[RegisterPoint] = []
    for point in ordered:
        p_end = point.address + point.type.registers
        if p_end > map_size:
            raise ValueError(
                f"point {point.sensor} at {point.table} register {point.address} ({point.type}) lies outside "
                f"the device's map of {map_size} registers"
            )
        if members and point.address < end:
            raise ValueError(
                f"point {point.sensor} overlaps point {members[-1].sensor} at register {point.address}"
            )
        if members and point.address - end <= max_gap and p_end - start <= max_registers:
            members.append(point)
            end = p_end
            continue
        if members:
            blocks.append((start, end - start, members))
        start, end, members = point.address, p_end, [point]
    if members:
        blocks.append((start, end - start, members))
    return blocks


def plan_device(site: Site, device: Device, max_gap: int = DEFAULT_MAX_GAP) -> DevicePlan:
    """The read blocks of one Modbus device, holding table first, then input."""
    if device.modbus is None:
        raise ValueError(f"device {device.id!r} is not a Modbus device")
    mb = device.modbus
    size = {RegisterTable.HOLDING: mb.holding_registers, RegisterTable.INPUT: mb.input_registers}
    blocks = []
    for table in (RegisterTable.HOLDING, RegisterTable.INPUT):
        points = [p for p in mb.points if p.table == table]
        try:
            merged = merge_points(points, size[table], max_gap)
        except ValueError as exc:
            raise ValueError(f"device {device.id!r}: {exc}") from None
        for start, count, members in merged:
            sensors = np.array([site.sensor_index(p.sensor) for p in members], dtype=np.int32)
            blocks.append(ReadBlock(table, start, count, BlockDecoder(start, members), sensors))
    return DevicePlan(device.id, mb, tuple(blocks))


def plan_site(
    site: Site, device_ids: Sequence[str] | None = None, max_gap: int = DEFAULT_MAX_GAP
) -> tuple[DevicePlan, ...]:
    """Plans for the site's Modbus devices (all of them, or exactly those named), in file order."""
    modbus = [d for d in site.devices if d.modbus is not None]
    if device_ids is None:
        return tuple(plan_device(site, d, max_gap) for d in modbus)
    known = {d.id for d in modbus}
    unknown = [i for i in device_ids if i not in known]
    if unknown:
        raise ValueError(f"not Modbus devices of site {site.path}: {', '.join(map(repr, unknown))}")
    wanted = set(device_ids)
    return tuple(plan_device(site, d, max_gap) for d in modbus if d.id in wanted)
