"""Load a site file once: YAML with line numbers → pydantic validation → cross-reference checks → Site."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from tankwatch.site import (
    Device,
    Enterprise,
    HazardSource,
    RegisterTable,
    Sensor,
    SensorKind,
    SiteFile,
    Tank,
)

PathKey = tuple[str | int, ...]


class SiteError(Exception):
    """A site-file problem, located as ``FILE:LINE: path.to.field: message``."""

    def __init__(self, file: str, line: int, path: PathKey, message: str) -> None:
        self.file, self.line, self.path, self.message = file, line, path, message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = format_path(self.path)
        return f"{self.file}:{self.line}: {where + ': ' if where else ''}{self.message}"


def format_path(path: PathKey) -> str:
    """Render ``('enterprises', 0, 'id')`` as ``enterprises[0].id``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(node: yaml.Node, file: str, path: PathKey = ()) -> Iterator[tuple[PathKey, int]]:
    """Yield (path, 1-based line) for every node, rejecting duplicate mapping keys."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise SiteError(file, key_node.start_mark.line + 1, path + (key,), "duplicate key")
            seen.add(key)
            yield path + (key,), key_node.start_mark.line + 1
            yield from _line_map(value_node, file, path + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _line_map(item, file, path + (i,))


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """A sensor with the place it sits in the park and the device that reads it."""

    index: int
    sensor: Sensor
    enterprise_id: str
    source_id: str
    tank_id: str | None
    device_id: str | None = None


@dataclass(frozen=True)
class Site:
    """A validated site with lookup tables; sensor indices are the order sensors appear in the file."""

    file: SiteFile
    path: str
    sensors: tuple[SensorInfo, ...]
    lines: dict[PathKey, int] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {s.sensor.id: s for s in self.sensors})
        by_source: dict[str, list[SensorInfo]] = {}
        for info in self.sensors:
            by_source.setdefault(info.source_id, []).append(info)
        object.__setattr__(self, "_by_source", {k: tuple(v) for k, v in by_source.items()})
        firsts = {e.id: e.hazard_sources[0].id for e in self.file.enterprises if e.hazard_sources}
        object.__setattr__(self, "_first_source", firsts)

    def sensors_of_source(self, source_id: str) -> tuple[SensorInfo, ...]:
        """The sensors of one hazard source (tank and source level), in index order."""
        return self._by_source.get(source_id, ())  # type: ignore[attr-defined]

    def first_source(self, enterprise_id: str) -> str:
        """An enterprise's first hazard source ("" when it has none): where what concerns the whole enterprise (a
        missed commitment, a roll call) is filed, since escalations and evidence name a source."""
        return self._first_source.get(enterprise_id, "")  # type: ignore[attr-defined]

    def sensor(self, sensor_id: str) -> SensorInfo:
        """Look up a sensor by id (KeyError when unknown)."""
        return self._by_id[sensor_id]  # type: ignore[attr-defined]

    def sensor_index(self, sensor_id: str) -> int:
        """Index of a sensor id in batches."""
        return self._by_id[sensor_id].index  # type: ignore[attr-defined]

    def has_sensor(self, sensor_id: str) -> bool:
        """Whether the site defines this sensor id."""
        return sensor_id in self._by_id  # type: ignore[attr-defined]

    @property
    def enterprises(self) -> list[Enterprise]:
        """Enterprises in file order."""
        return self.file.enterprises

    def sources(self) -> Iterator[tuple[Enterprise, HazardSource]]:
        """Every hazard source with its enterprise."""
        for ent in self.file.enterprises:
            for src in ent.hazard_sources:
                yield ent, src

    def tanks(self) -> Iterator[tuple[Enterprise, HazardSource, Tank]]:
        """Every tank with its enterprise and hazard source."""
        for ent, src in self.sources():
            for tank in src.tanks:
                yield ent, src, tank

    @property
    def devices(self) -> list[Device]:
        """Devices in file order."""
        return self.file.devices


def load_site(path: str | Path) -> Site:
    """Read, validate and cross-check a site file; raises SiteError naming file, line and field."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteError(file, 0, (), f"cannot read: {exc.strerror}") from exc
    return parse_site(text, file)


def parse_site(text: str, file: str = "<site>") -> Site:
    """Validate site-file text; ``file`` is only used in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.context_mark or exc.problem_mark  # where the broken construct starts, when known
        raise SiteError(file, (mark.line + 1) if mark else 0, (), f"invalid YAML: {exc.problem}") from exc
    if root is None or not isinstance(data, dict):
        raise SiteError(file, 1, (), "the site file must be a YAML mapping")
    return rebuild_site(data, file, dict(_line_map(root, file)))


def rebuild_site(data: dict, file: str, lines: dict[PathKey, int] | None = None) -> Site:
    """Validate plain site data (e.g. a loaded site with overrides applied) into a Site."""
    lines = lines or {}
    try:
        model = SiteFile.model_validate(data)
    except ValidationError as exc:
        raise _first_validation_error(exc, lines, file) from None
    problems = list(_cross_check(model))
    if problems:
        path, message = min(problems, key=lambda p: _line_of(p[0], lines))
        raise SiteError(file, _line_of(path, lines), path, message)
    model = _at_this_tier(model)
    return Site(file=model, path=file, sensors=tuple(_sensor_table(model)), lines=lines)


def _at_this_tier(model: SiteFile) -> SiteFile:
    """The site with the points of reported enterprises expected no more often than their sender's snapshots."""
    period = {ent: s.realtime_s for s in (model.receiver.senders if model.receiver else ())
              for ent in s.local_enterprises.values()}
    return expected_no_faster(model, period)


def expected_no_faster(model: SiteFile, period_s: Mapping[str, float]) -> SiteFile:
    """The site with each point of the enterprises in ``period_s`` expected no more often than every that many
    seconds (their readings come no faster: a lower tier's snapshots, a coarse scenario step)."""
    if not period_s:
        return model

    def slower(sensors: list[Sensor], at_least_s: float) -> list[Sensor]:
        return [s if s.expected_period_s >= at_least_s else s.model_copy(update={"expected_period_s": at_least_s})
                for s in sensors]

    enterprises = []
    for ent in model.enterprises:
        if ent.id in period_s:
            p = period_s[ent.id]
            ent = ent.model_copy(update={"hazard_sources": [src.model_copy(update={
                "sensors": slower(src.sensors, p),
                "tanks": [t.model_copy(update={"sensors": slower(t.sensors, p)}) for t in src.tanks],
            }) for src in ent.hazard_sources]})
        enterprises.append(ent)
    return model.model_copy(update={"enterprises": enterprises})


def read_every(site: Site, period_s: float) -> Site:
    """The site with every point expected no more often than every ``period_s`` (all read once a coarse step)."""
    model = expected_no_faster(site.file, {e.id: period_s for e in site.file.enterprises})
    return Site(file=model, path=site.path, sensors=tuple(_sensor_table(model)), lines=site.lines)


def _line_of(path: PathKey, lines: dict[PathKey, int]) -> int:
    """Line of the longest known prefix of ``path`` (pydantic adds union tags that YAML does not have)."""
    known: PathKey = ()
    for part in path:
        if known + (part,) in lines:
            known = known + (part,)
    return lines.get(known, 1)


def _clean_loc(loc: tuple) -> PathKey:
    """Drop pydantic's union-member tags from an error location, keeping file keys and indices."""
    return tuple(p for p in loc if isinstance(p, int) or not str(p).startswith(("function-", "tagged-union")))


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "missing required key",
}


def _first_validation_error(exc: ValidationError, lines: dict[PathKey, int], file: str) -> SiteError:
    """Turn the earliest (by line) pydantic error into a SiteError."""
    errors = []
    for err in exc.errors(include_url=False):
        path = _clean_loc(err["loc"])
        message = _MESSAGES.get(err["type"], err["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] not in _MESSAGES and "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})"
        errors.append((_line_of(path, lines), _file_path(path, lines), message))
    line, path, message = min(errors, key=lambda e: e[0])
    return SiteError(file, line, path, message)


def _file_path(path: PathKey, lines: dict[PathKey, int]) -> PathKey:
    """Keep the parts of a pydantic location that exist in the file, plus a final unknown/missing key."""
    kept: PathKey = ()
    for i, part in enumerate(path):
        if kept + (part,) in lines or i == len(path) - 1:
            kept = kept + (part,)
    return kept


def _cross_check(model: SiteFile) -> Iterator[tuple[PathKey, str]]:
    """Checks across the whole file: unique ids, device bindings, register maps."""
    yield from _duplicates(
        (("enterprises", i, "id"), e.id) for i, e in enumerate(model.enterprises)
    )
    yield from _duplicates(
        (("enterprises", i, "hazard_sources", j, "id"), s.id)
        for i, e in enumerate(model.enterprises)
        for j, s in enumerate(e.hazard_sources)
    )
    yield from _duplicates(
        (("enterprises", i, "hazard_sources", j, "tanks", k, "id"), t.id)
        for i, e in enumerate(model.enterprises)
        for j, s in enumerate(e.hazard_sources)
        for k, t in enumerate(s.tanks)
    )
    sensor_paths = list(_sensor_paths(model))
    yield from _duplicates((p + ("id",), s.id) for p, s in sensor_paths)
    yield from _duplicates((("devices", i, "id"), d.id) for i, d in enumerate(model.devices))
    yield from _duplicates((("regulators", i, "id"), r.id) for i, r in enumerate(model.regulators))

    for path, sensor in sensor_paths:
        yield from _check_gas_limits(sensor, path)
    known = {s.id for _, s in sensor_paths}
    bound: dict[str, str] = {}
    fed: dict[tuple[tuple[str, ...], str], str] = {}  # (bootstrap, Kafka topic) → device
    for i, dev in enumerate(model.devices):
        if dev.modbus is not None:
            yield from _check_modbus(dev, ("devices", i, "modbus"), known, bound)
        if dev.mqtt is not None:
            base = ("devices", i, "mqtt")
            single_topic = dev.mqtt.payload.format == "json_value" and "{sensor}" not in dev.mqtt.topic
            if single_topic and len(dev.mqtt.sensors) != 1:
                yield base + ("topic",), "json_value topics need a {sensor} level when a device has several sensors"
            for k, sid in enumerate(dev.mqtt.sensors):
                yield from _bind(sid, dev.id, base + ("sensors", k), known, bound)
        if dev.kafka is not None:
            base = ("devices", i, "kafka")
            feed = (tuple(sorted(dev.kafka.bootstrap)), dev.kafka.topic)
            if feed in fed:
                yield base + ("topic",), (f"topic {dev.kafka.topic!r} already feeds device {fed[feed]!r}: a topic "
                                          "feeds one device, which lists all of its sensors")
            fed.setdefault(feed, dev.id)
            for k, sid in enumerate(dev.kafka.sensors):
                yield from _bind(sid, dev.id, base + ("sensors", k), known, bound)
    reported = model.reported_enterprises()
    if reported:
        owner = {s.id: model.enterprises[int(p[1])].id for p, s in sensor_paths}
        for i, dev in enumerate(model.devices):
            if theirs := sorted({owner[sid] for sid, did in bound.items() if did == dev.id} & set(reported)):
                yield ("devices", i, "id"), (f"device {dev.id!r} reads sensors of {', '.join(theirs)}, whose values a "
                                             "lower tier reports (receiver local_enterprises): read them in one place")


COMBUSTIBLE_MAXIMA = {"first": 25.0, "second": 50.0}  # %LEL, GB/T 50493-2019 §5.5.2


def _check_gas_limits(sensor: Sensor, path: PathKey) -> Iterator[tuple[PathKey, str]]:
    """Combustible setpoints may be lower than the standard's, never higher."""
    if sensor.kind != SensorKind.GAS_COMBUSTIBLE or sensor.gas_limits is None:
        return
    for level, maximum in COMBUSTIBLE_MAXIMA.items():
        value = getattr(sensor.gas_limits, level)
        if value is not None and value > maximum:
            yield (
                path + ("gas_limits", level),
                f"combustible {level}-level alarm {value} %LEL exceeds {maximum:g} %LEL (GB/T 50493-2019 §5.5.2)",
            )


def _check_modbus(
    dev: Device, base: PathKey, known: set[str], bound: dict[str, str]
) -> Iterator[tuple[PathKey, str]]:
    """Every point names a known sensor and fits inside the device's register map without overlap."""
    assert dev.modbus is not None
    size = {RegisterTable.HOLDING: dev.modbus.holding_registers, RegisterTable.INPUT: dev.modbus.input_registers}
    used: dict[tuple[RegisterTable, int], int] = {}
    for k, point in enumerate(dev.modbus.points):
        path = base + ("points", k)
        yield from _bind(point.sensor, dev.id, path + ("sensor",), known, bound)
        end = point.address + point.type.registers
        limit = size[point.table]
        if end > limit:
            yield (
                path + ("address",),
                f"register {point.address} ({point.type}, {point.type.registers} registers) lies outside the "
                f"device's {point.table} map of {limit} registers",
            )
            continue
        for reg in range(point.address, end):
            if (point.table, reg) in used:
                other = dev.modbus.points[used[(point.table, reg)]].sensor
                yield path + ("address",), f"{point.table} register {reg} is already used by sensor {other}"
                break
            used[(point.table, reg)] = k


def _bind(
    sensor_id: str, device_id: str, path: PathKey, known: set[str], bound: dict[str, str]
) -> Iterator[tuple[PathKey, str]]:
    """A device may read a sensor only if it exists and no other device reads it."""
    if sensor_id not in known:
        yield path, f"unknown sensor {sensor_id!r}"
    elif sensor_id in bound:
        yield path, f"sensor {sensor_id!r} is already read by device {bound[sensor_id]!r}"
    else:
        bound[sensor_id] = device_id


def _duplicates(items: Iterator[tuple[PathKey, str]]) -> Iterator[tuple[PathKey, str]]:
    """Report every repeat of an id after its first use."""
    items = list(items)
    counts = Counter(v for _, v in items)
    first: dict[str, PathKey] = {}
    for path, value in items:
        if counts[value] > 1 and value in first:
            yield path, f"duplicate id {value!r} (first used at {format_path(first[value])})"
        first.setdefault(value, path)


def _sensor_paths(model: SiteFile) -> Iterator[tuple[PathKey, Sensor]]:
    """Every sensor with its path in the file, in file order."""
    for i, ent in enumerate(model.enterprises):
        for j, src in enumerate(ent.hazard_sources):
            base = ("enterprises", i, "hazard_sources", j)
            for k, tank in enumerate(src.tanks):
                for m, sensor in enumerate(tank.sensors):
                    yield base + ("tanks", k, "sensors", m), sensor
            for m, sensor in enumerate(src.sensors):
                yield base + ("sensors", m), sensor


def _sensor_table(model: SiteFile) -> Iterator[SensorInfo]:
    """Flatten sensors with their enterprise, source, tank and device."""
    device_of: dict[str, str] = {}
    for dev in model.devices:
        device_of.update({sid: dev.id for sid in dev.sensor_ids})
    index = 0
    for ent in model.enterprises:
        for src in ent.hazard_sources:
            for tank in src.tanks:
                for sensor in tank.sensors:
                    yield SensorInfo(index, sensor, ent.id, src.id, tank.id, device_of.get(sensor.id))
                    index += 1
            for sensor in src.sensors:
                yield SensorInfo(index, sensor, ent.id, src.id, None, device_of.get(sensor.id))
                index += 1
