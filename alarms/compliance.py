"""Clause 28 of the Nantong/Huai'an plans: what a major-hazard tank farm must monitor, checked per hazard source.

For every storage-unit hazard source that is a major hazard (regulatory GB 18218 assessment): each in-service
tank has temperature, level and (where pressurised) pressure acquired continuously (configured and read by a
device) and currently online (good and recent); the combustible/toxic gas detectors its chemicals need are
configured and online; level-1/2 sources have an ESD signal configured. Legal baseline: SAWS Order No. 40
Art. 13 (regulations.md §3.3 [C]); the clause-28 wording is paraphrased from the project's issue 4.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from typing import Literal, TypeVar

import numpy as np

from alarms.hazard import UnknownChemical, lookup, regulatory_assessment
from tankwatch.config import SensorInfo, Site
from tankwatch.records import Quality, ReadingBatch, newest_rows
from tankwatch.site import HazardSource, SensorKind, UnitKind

BASIS = "南通/淮安方案第28条；安监总局令第40号第13条 / Nantong & Huai'an plans clause 28; SAWS Order No. 40 Art. 13"
# A reading counts as current when it is younger than this many expected periods, and at least this many
# seconds (our default: AQ 3035's acquisition period was not found, regulations.md §3.1 [U]).
STALE_PERIODS = 5
STALE_FLOOR_S = 10.0

Rule = Literal["temperature", "level", "pressure", "acquired", "online", "gas_combustible", "gas_toxic", "esd"]

RULE_TEXT: dict[str, tuple[str, str]] = {
    "temperature": ("储罐应设置温度不间断采集监测", "each tank must have continuous temperature acquisition"),
    "level": ("储罐应设置液位不间断采集监测", "each tank must have continuous level acquisition"),
    "pressure": ("压力储罐应设置压力不间断采集监测", "each pressurised tank must have continuous pressure acquisition"),
    "acquired": ("监测点应接入采集系统连续采集", "the instrument must be wired to a device and acquired continuously"),
    "online": ("监测数据应实时在线（质量正常且未过期）", "the instrument must be online now (good quality and recent)"),
    "gas_combustible": (
        "应设置可燃气体泄漏检测报警并在线",
        "combustible gas leak detection must be configured and online",
    ),
    "gas_toxic": ("应设置有毒气体泄漏检测报警并在线", "toxic gas leak detection must be configured and online"),
    "esd": (
        "一级、二级重大危险源应设置紧急切断（ESD）信号",
        "level-1/2 major hazards must have an ESD signal configured",
    ),
}

_TANK_INSTRUMENTS = {
    "temperature": SensorKind.TEMPERATURE,
    "level": SensorKind.LEVEL,
    "pressure": SensorKind.PRESSURE,
}
T = TypeVar("T")
_DETECTOR_KIND = {"combustible": SensorKind.GAS_COMBUSTIBLE, "toxic": SensorKind.GAS_TOXIC}


def stale_after_ms(info: SensorInfo) -> int:
    """How old a sensor's latest reading may be and still count as online."""
    # the alarm core's comm-loss setting when the site model has it, so "online" agrees with its comm-loss alarm
    periods = getattr(info.sensor, "stale_periods", None) or STALE_PERIODS
    return int(max(periods * info.sensor.expected_period_s, STALE_FLOOR_S) * 1000)


@dataclass(frozen=True, slots=True)
class Gap:
    """One unmet requirement, with the rule text in Chinese and English."""

    source_id: str
    rule: Rule
    tank_id: str | None = None
    sensor_id: str | None = None
    detail: str = ""

    @property
    def text_zh(self) -> str:
        """Rule text (Chinese) plus where."""
        return _where_zh(self) + RULE_TEXT[self.rule][0] + (f"（{self.detail}）" if self.detail else "")

    @property
    def text_en(self) -> str:
        """Rule text (English) plus where."""
        return _where_en(self) + RULE_TEXT[self.rule][1] + (f" ({self.detail})" if self.detail else "")

    def short(self) -> str:
        """Compact form for grade reasons, e.g. ``T501-TT online (quality comm-fail)``."""
        where = self.sensor_id or self.tank_id or self.source_id
        return f"{where} {self.rule}" + (f" ({self.detail})" if self.detail else "")

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "rule": self.rule,
            "tank_id": self.tank_id,
            "sensor_id": self.sensor_id,
            "detail": self.detail,
            "text_zh": self.text_zh,
            "text_en": self.text_en,
        }


def _where_zh(gap: Gap) -> str:
    parts = [p for p in (gap.tank_id, gap.sensor_id) if p]
    return f"{'/'.join(parts)}：" if parts else ""


def _where_en(gap: Gap) -> str:
    parts = [p for p in (gap.tank_id, gap.sensor_id) if p]
    return f"{'/'.join(parts)}: " if parts else ""


@dataclass(frozen=True)
class SourceCompliance:
    """Compliance of one hazard source: not applicable, compliant, or its gaps."""

    source_id: str
    enterprise_id: str
    applicable: bool
    level: int | None  # regulatory GB 18218 level
    online_checked: bool  # False when no readings were given (configuration only)
    gaps: tuple[Gap, ...] = ()
    not_applicable_reason: str | None = None
    required: tuple[str, ...] = field(default=())  # sensor ids of required instruments

    @property
    def compliant(self) -> bool:
        """No gaps (a not-applicable source is compliant)."""
        return not self.gaps

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "source_id": self.source_id,
            "enterprise_id": self.enterprise_id,
            "applicable": self.applicable,
            "not_applicable_reason": self.not_applicable_reason,
            "level": self.level,
            "online_checked": self.online_checked,
            "compliant": self.compliant,
            "basis": BASIS,
            "gaps": [g.to_dict() for g in self.gaps],
        }


def required_detectors(source: HazardSource) -> set[str]:
    """Gas detection ("combustible"/"toxic") the source's chemicals need; unknown chemicals need none here."""
    need: set[str] = set()
    for tank in source.tanks:
        try:
            detector = lookup(tank.chemical).detector
        except UnknownChemical:
            continue  # reported by the hazard assessment, which fails on it
        if detector:
            need.add(detector)
    return need


def required_sensors(site: Site, source: HazardSource, level: int | None) -> list[SensorInfo]:
    """The instruments clause 28 requires that the source has: tank T/L/P, needed gas detectors, ESD (level 1/2)."""
    detectors = {_DETECTOR_KIND[d] for d in required_detectors(source)}
    tanks = {t.id: t for t in source.tanks}
    out = []
    for info in site.sensors_of_source(source.id):
        kind = info.sensor.kind
        tank = tanks.get(info.tank_id) if info.tank_id is not None else None
        if tank is not None and not tank.in_service:
            continue
        on_tank = tank is not None and (
            kind in (SensorKind.TEMPERATURE, SensorKind.LEVEL) or (kind == SensorKind.PRESSURE and tank.pressurised)
        )
        if on_tank or kind in detectors or (kind == SensorKind.ESD_VALVE and level in (1, 2)):
            out.append(info)
    return out


def stale_limits_ms(site: Site) -> np.ndarray:
    """``stale_after_ms`` of every sensor, by site index."""
    return np.array([stale_after_ms(i) for i in site.sensors], dtype=np.int64)


class LatestView:
    """Latest reading per sensor index from a ReadingBatch of latest rows (e.g. TimeSeriesStore.latest()).

    With ``watching_since_ms``, a sensor never heard is offline only once its staleness limit has passed since
    then, as the alarm core raises comm-loss (a platform that has just started has not missed anything yet).
    """

    def __init__(
        self, site: Site, latest: ReadingBatch, stale_ms: np.ndarray | None = None,
        watching_since_ms: int | None = None,
    ) -> None:
        n = len(site.sensors)
        self.ts = np.full(n, -1, dtype=np.int64)
        self.quality = np.full(n, Quality.BAD, dtype=np.uint8)
        self.value = np.full(n, np.nan)
        ok = (latest.sensor >= 0) & (latest.sensor < n)
        sensor, ts = latest.sensor[ok], latest.ts_ms[ok]
        rows = newest_rows(sensor, ts)
        idx = sensor[rows]
        self.ts[idx] = ts[rows]
        self.quality[idx] = latest.quality[ok][rows]
        self.value[idx] = latest.value[ok][rows]
        self.stale_ms = stale_ms if stale_ms is not None else stale_limits_ms(site)
        self.watching_since_ms = watching_since_ms
        self._mask_at: tuple[int, np.ndarray] | None = None

    def online_mask(self, now_ms: int) -> np.ndarray:
        """bool per sensor index: good quality and younger than its staleness limit (cached per ``now_ms``)."""
        if self._mask_at is None or self._mask_at[0] != now_ms:
            mask = (self.ts >= 0) & (self.quality == Quality.GOOD) & (now_ms - self.ts <= self.stale_ms)
            if self.watching_since_ms is not None:
                mask |= (self.ts < 0) & (now_ms - self.watching_since_ms <= self.stale_ms)
            self._mask_at = (now_ms, mask)
        return self._mask_at[1]

    def online(self, info: SensorInfo, now_ms: int) -> bool:
        """Good quality and younger than the staleness limit."""
        return bool(self.online_mask(now_ms)[info.index])

    def why_offline(self, info: SensorInfo, now_ms: int) -> str:
        """Short English reason a sensor is not online."""
        i = info.index
        if self.ts[i] < 0:
            return "no reading"
        if self.quality[i] != Quality.GOOD:
            return f"quality {Quality(int(self.quality[i])).label}" if self.quality[i] < len(Quality) else "bad quality"
        return f"last reading {(now_ms - int(self.ts[i])) / 1000:.0f} s ago"


@dataclass(frozen=True, slots=True)
class OnlineCheck:
    """A required instrument that a device reads: a gap only while it is offline."""

    info: SensorInfo
    rule: Rule

    def gap(self, source_id: str, view: LatestView, now_ms: int) -> Gap:
        """The ``online`` gap, saying why the instrument is offline."""
        detail = f"{self.rule}: {view.why_offline(self.info, now_ms)}"
        return Gap(source_id, "online", self.info.tank_id, self.info.sensor.id, detail)


class SourceRequirements:
    """Clause 28 for one hazard source, worked out once from the site (site models are immutable): the
    regulatory level, the gaps that hold whatever the readings, and the instruments that are gaps only while
    offline, so that checking readings is one lookup in ``LatestView.online_mask``."""

    def __init__(self, site: Site, source: HazardSource, enterprise_id: str) -> None:
        assessment = regulatory_assessment(site, source).assessment
        self.source_id = source.id
        self.enterprise_id = enterprise_id
        self.level = assessment.level
        self.not_applicable_reason: str | None = None
        if source.unit_kind != UnitKind.STORAGE:
            self.not_applicable_reason = "production unit"
        elif not assessment.is_major:
            self.not_applicable_reason = "not a major hazard"
        items = list(_requirements(site, source, self.level)) if self.applicable else []
        # file-order positions, so that online gaps go back between the fixed ones where they belong
        self._fixed_pos = tuple(pos for pos, item in enumerate(items) if isinstance(item, Gap))
        self._fixed_gaps = tuple(item for item in items if isinstance(item, Gap))
        checks = [(pos, item) for pos, item in enumerate(items) if isinstance(item, OnlineCheck)]
        self._check_pos = tuple(pos for pos, _ in checks)
        self._checks = tuple(check for _, check in checks)
        self._check_index = np.array([check.info.index for check in self._checks], dtype=np.intp)
        # the instruments clause 28 asks of a source of this level (grading watches them whether or not it applies)
        self.instruments = tuple(required_sensors(site, source, self.level))
        self.required = tuple(i.sensor.id for i in self.instruments) if self.applicable else ()

    @property
    def applicable(self) -> bool:
        """A major-hazard storage unit (clause 28 applies)."""
        return self.not_applicable_reason is None

    def check(self, view: LatestView | None = None, now_ms: int | None = None) -> SourceCompliance:
        """The source's compliance; with ``view`` and ``now_ms`` the online requirements are checked too."""
        online_checked = view is not None and now_ms is not None
        if not self.applicable:
            return SourceCompliance(
                self.source_id, self.enterprise_id, False, self.level, online_checked, (), self.not_applicable_reason
            )
        gaps = self._fixed_gaps
        if view is not None and now_ms is not None:
            gaps = self._with_offline(self._fixed_gaps, view, now_ms, lambda gap: gap)
        return SourceCompliance(
            self.source_id, self.enterprise_id, True, self.level, online_checked, gaps, None, self.required
        )

    def short_gaps(self, view: LatestView, now_ms: int) -> tuple[str, ...]:
        """``Gap.short()`` of every gap ``check(view, now_ms)`` finds (the fixed ones formatted once)."""
        return self._with_offline(self._fixed_short, view, now_ms, Gap.short)

    @cached_property
    def _fixed_short(self) -> tuple[str, ...]:
        return tuple(gap.short() for gap in self._fixed_gaps)

    def _with_offline(
        self, fixed: tuple[T, ...], view: LatestView, now_ms: int, form: Callable[[Gap], T]
    ) -> tuple[T, ...]:
        """The fixed gaps (in some form) with the offline instruments' gaps put in at their file positions."""
        offline = np.flatnonzero(~view.online_mask(now_ms)[self._check_index])
        if not len(offline):
            return fixed
        found = [(self._check_pos[k], form(self._checks[k].gap(self.source_id, view, now_ms))) for k in offline]
        merged = heapq.merge(zip(self._fixed_pos, fixed, strict=True), found, key=itemgetter(0))
        return tuple(item for _, item in merged)


def _requirements(site: Site, source: HazardSource, level: int | None) -> Iterator[Gap | OnlineCheck]:
    """In file order: the gaps that hold whatever the readings, and the instruments to check online."""
    infos = site.sensors_of_source(source.id)

    def usable(info: SensorInfo, rule: Rule) -> Iterator[Gap | OnlineCheck]:
        """A required instrument must be read by a device and (when checked) be online."""
        if info.device_id is None:
            yield Gap(source.id, "acquired", info.tank_id, info.sensor.id, f"{rule}: no device reads it")
        else:
            yield OnlineCheck(info, rule)

    for tank in source.tanks:
        if not tank.in_service:
            continue
        on_tank = [i for i in infos if i.tank_id == tank.id]
        for rule, kind in _TANK_INSTRUMENTS.items():
            if rule == "pressure" and not tank.pressurised:
                continue
            have = [i for i in on_tank if i.sensor.kind == kind]
            if not have:
                yield Gap(source.id, rule, tank.id, None, "not configured")  # type: ignore[arg-type]
            for info in have:
                yield from usable(info, rule)  # type: ignore[arg-type]
    for need in sorted(required_detectors(source)):
        kind = _DETECTOR_KIND[need]
        rule: Rule = "gas_combustible" if need == "combustible" else "gas_toxic"
        have = [i for i in infos if i.sensor.kind == kind]
        if not have:
            yield Gap(source.id, rule, None, None, "no detector configured")
        for info in have:
            yield from usable(info, rule)
    if level in (1, 2):
        unit_esd = [i for i in infos if i.tank_id is None and i.sensor.kind == SensorKind.ESD_VALVE]
        for tank in source.tanks:
            if not tank.in_service:
                continue
            esd = [i for i in infos if i.tank_id == tank.id and i.sensor.kind == SensorKind.ESD_VALVE] or unit_esd
            if not esd:
                yield Gap(source.id, "esd", tank.id, None, f"level {level}: no esd_valve signal")
            for info in esd:
                if info.device_id is None:
                    yield Gap(source.id, "acquired", tank.id, info.sensor.id, "esd: no device reads it")


def check_source(
    site: Site,
    source: HazardSource,
    enterprise_id: str,
    latest: ReadingBatch | LatestView | None = None,
    now_ms: int | None = None,
) -> SourceCompliance:
    """Check one source; with ``latest`` and ``now_ms`` the online requirements are checked too."""
    view = LatestView(site, latest) if isinstance(latest, ReadingBatch) else latest
    return SourceRequirements(site, source, enterprise_id).check(view, now_ms)


def check_site(site: Site, latest: ReadingBatch | None = None, now_ms: int | None = None) -> list[SourceCompliance]:
    """Every hazard source of the site, in file order."""
    view = LatestView(site, latest) if latest is not None else None
    return [check_source(site, src, ent.id, view, now_ms) for ent, src in site.sources()]
