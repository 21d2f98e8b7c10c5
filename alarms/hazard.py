"""GB 18218-2018 identification and grading: S = Σq/Q, R = α·Σβq/Q, levels 1–4, per hazard source and live.

The reference tables ship as ``alarms/data/gb18218.json`` (every row tagged [C]/[S]/[U] as in the project's
regulations fact sheet). Two assessments of a hazard source are kept apart and labelled: the *regulatory*
one from the tanks' design maximum quantities (GB 18218-2018 §4.2.2) and a *live* inventory indicator from the
measured levels (geometry or strapping table × density).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

import numpy as np

from tankwatch.config import Site
from tankwatch.geometry import height_m, mass_t
from tankwatch.records import Quality, ReadingBatch, stable_id
from tankwatch.site import HazardSource, SensorKind, Tank

Basis = Literal["regulatory", "live"]
BASIS_LABEL = {
    "regulatory": ("法定辨识（设计最大量）", "regulatory: design maximum quantities"),
    "live": ("实时存量指标（液位×密度）", "live inventory indicator: level × density"),
}
LEVEL_NAMES_ZH = {1: "一级", 2: "二级", 3: "三级", 4: "四级"}
# R is rounded to this many decimals before it is compared with the Table 6 bounds, so that binary floating
# point (e.g. 1.2 × 83.333…) cannot move a source across a legal boundary that the hand calculation sits on.
R_DECIMALS = 9


class UnknownChemical(KeyError):
    """A chemical that is neither a CAS number, a Table 1 name nor a Table 2 symbol; the message names it."""

    def __init__(self, key: str, message: str | None = None) -> None:
        self.key = key
        super().__init__(key)
        self.message = message or (
            f"unknown chemical {key!r}: not a CAS number, GB 18218-2018 Table 1 name or Table 2 symbol"
        )

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Chemical:
    """One entry of the reference data: a Table 1 chemical, or a Table 2 category used as a chemical."""

    key: str  # canonical key: first Chinese name for Table 1, the symbol for Table 2
    name_zh: str
    name_en: str
    cas: tuple[str, ...]
    critical_t: float  # Q
    beta: float  # β (Table 3 or Table 4)
    symbol: str | None  # Table 2 hazard symbol (the category used for β when β comes from Table 4)
    table: Literal["table1", "table2"]
    tag: str  # confidence of name/CAS/Q
    beta_tag: str  # confidence of β
    detector: Literal["combustible", "toxic"] | None  # gas detection a storage unit of it needs


@dataclass(frozen=True)
class ReferenceData:
    """GB 18218-2018 Tables 1–6 loaded from package data, with lookup by CAS, name or symbol."""

    version: str
    chemicals: tuple[Chemical, ...]
    alpha_bands: tuple[tuple[int, int | None, float], ...]  # (min people, max people or None, α)
    level_bounds: tuple[tuple[int, float | None], ...]  # (level, minimum R or None)
    raw: dict = field(repr=False, default_factory=dict)
    _index: dict[str, list[Chemical]] = field(repr=False, default_factory=dict)

    def lookup(self, key: str) -> Chemical:
        """The chemical a key names (CAS, Chinese or English name or alias, Table 2 symbol), or UnknownChemical."""
        found = self._index.get(_norm(key), [])
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(c.name_zh for c in found)
            message = f"ambiguous chemical {key!r}: it names several Table 1 entries ({names}); use the name"
            raise UnknownChemical(key, message)
        raise UnknownChemical(key)


def _norm(key: str) -> str:
    """Lookup form of a key: trimmed, case-folded, full-width brackets and spaces unified."""
    text = str(key).strip().casefold()
    for wide, narrow in (("（", "("), ("）", ")"), ("，", ","), ("　", " ")):
        text = text.replace(wide, narrow)
    return " ".join(text.split())


@cache
def reference() -> ReferenceData:
    """Load ``alarms/data/gb18218.json`` once."""
    raw = json.loads(resources.files("alarms").joinpath("data/gb18218.json").read_text(encoding="utf-8"))
    beta_of_symbol = {row["symbol"]: float(row["beta"]) for row in raw["table4"]}
    chemicals: list[Chemical] = []
    index: dict[str, list[Chemical]] = {}

    def add(chem: Chemical, keys: list[str]) -> None:
        chemicals.append(chem)
        for k in {_norm(k) for k in keys}:
            index.setdefault(k, []).append(chem)

    for row in raw["table1"]:
        chem = Chemical(
            key=row["names_zh"][0],
            name_zh=row["names_zh"][0],
            name_en=row["names_en"][0],
            cas=tuple(row["cas"]),
            critical_t=float(row["critical_t"]),
            beta=float(row["beta"]),
            symbol=row["symbol"],
            table="table1",
            tag=row["tag"],
            beta_tag=row["beta_tag"],
            detector=row["detector"],
        )
        add(chem, row["names_zh"] + row["names_en"] + row["cas"])
    table2 = {row["symbol"]: row for row in raw["table2"]}
    for row in raw["table2"]:
        chem = Chemical(
            key=row["symbol"],
            name_zh=row["class_zh"],
            name_en=row["class_en"],
            cas=(),
            critical_t=float(row["critical_t"]),
            beta=beta_of_symbol[row["symbol"]],
            symbol=row["symbol"],
            table="table2",
            tag=row["tag"],
            beta_tag="C",
            detector=row["detector"],
        )
        add(chem, [row["symbol"]])
    for row in raw["not_in_table1"]:
        cat = table2[row["symbol"]]
        chem = Chemical(
            key=row["names_zh"][0],
            name_zh=row["names_zh"][0],
            name_en=row["names_en"][0],
            cas=tuple(row["cas"]),
            critical_t=float(cat["critical_t"]),
            beta=beta_of_symbol[row["symbol"]],
            symbol=row["symbol"],
            table="table2",
            tag=row["tag"],
            beta_tag=row["tag"],
            detector=cat["detector"],
        )
        add(chem, row["names_zh"] + row["names_en"] + row["cas"])
    alpha_bands = tuple((int(b["min_people"]), b["max_people"], float(b["alpha"])) for b in raw["table5"])
    level_bounds = tuple((int(b["level"]), b["r_min"]) for b in raw["table6"])
    return ReferenceData(
        version=f"{raw['standard']} / data {raw['data_version']}",
        chemicals=tuple(chemicals),
        alpha_bands=alpha_bands,
        level_bounds=level_bounds,
        raw=raw,
        _index=index,
    )


def lookup(key: str) -> Chemical:
    """The chemical a CAS number, Table 1 name (Chinese or English, aliases) or Table 2 symbol names."""
    return reference().lookup(key)


def alpha_for(exposed_population: int) -> float:
    """Table 5: α from the number of people exposed off site (within 500 m)."""
    if isinstance(exposed_population, bool) or not isinstance(exposed_population, int) or exposed_population < 0:
        raise ValueError(f"exposed_population must be a whole number >= 0, not {exposed_population!r}")
    for low, high, alpha in reference().alpha_bands:
        if exposed_population >= low and (high is None or exposed_population <= high):
            return alpha
    raise ValueError(f"no Table 5 band holds {exposed_population} people")  # the bands cover 0…∞


def hazard_level_from_r(r: float) -> int:
    """Table 6: level 1 (R ≥ 100), 2 (50 ≤ R < 100), 3 (10 ≤ R < 50), 4 (R < 10)."""
    value = round(r, R_DECIMALS)
    for level, r_min in reference().level_bounds:
        if r_min is None or value >= r_min:
            return level
    raise AssertionError("Table 6 has a level without a lower bound")


@dataclass(frozen=True, slots=True)
class Term:
    """One chemical's share: q/Q and β·q/Q."""

    chemical: Chemical
    keys: tuple[str, ...]  # the keys of ``contents`` that named it
    q_t: float
    ratio: float  # q/Q
    weighted: float  # β·q/Q

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        c = self.chemical
        return {
            "chemical": c.key,
            "name_zh": c.name_zh,
            "name_en": c.name_en,
            "cas": list(c.cas),
            "keys": list(self.keys),
            "table": c.table,
            "symbol": c.symbol,
            "q_t": self.q_t,
            "critical_t": c.critical_t,
            "beta": c.beta,
            "ratio": self.ratio,
            "weighted": self.weighted,
            "tag": c.tag,
            "beta_tag": c.beta_tag,
        }


@dataclass(frozen=True, slots=True)
class Assessment:
    """Result of GB 18218-2018 identification and grading of one unit."""

    terms: tuple[Term, ...]
    s: float  # Σ q/Q; a major hazard when >= 1
    alpha: float
    r: float  # α·Σ β·q/Q
    exposed_population: int

    @property
    def is_major(self) -> bool:
        """Whether the unit is a major hazard (S ≥ 1)."""
        return round(self.s, R_DECIMALS) >= 1.0

    @property
    def level(self) -> int | None:
        """Level 1–4 when a major hazard, else None."""
        return hazard_level_from_r(self.r) if self.is_major else None

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        level = self.level
        return {
            "s": self.s,
            "r": self.r,
            "alpha": self.alpha,
            "exposed_population": self.exposed_population,
            "is_major": self.is_major,
            "level": level,
            "level_zh": LEVEL_NAMES_ZH.get(level) if level else "非重大危险源",
            "terms": [t.to_dict() for t in self.terms],
        }


def assess(contents: Mapping[str, float], exposed_population: int) -> Assessment:
    """Identify and grade a unit holding ``contents`` (chemical key → tonnes) with that many people off site."""
    ref = reference()
    grouped: dict[str, tuple[Chemical, list[str], float]] = {}
    for key, q in contents.items():
        chem = ref.lookup(key)
        try:
            q_t = float(q)
        except (TypeError, ValueError):
            raise ValueError(f"quantity of {key!r} must be a number of tonnes, not {q!r}") from None
        if not math.isfinite(q_t) or q_t < 0:
            raise ValueError(f"quantity of {key!r} must be a finite number of tonnes >= 0, not {q!r}")
        _, keys, total = grouped.get(chem.key, (chem, [], 0.0))
        grouped[chem.key] = (chem, keys + [str(key)], total + q_t)
    terms = tuple(
        Term(chem, tuple(keys), q_t, q_t / chem.critical_t, chem.beta * q_t / chem.critical_t)
        for chem, keys, q_t in grouped.values()
    )
    alpha = alpha_for(exposed_population)
    s = math.fsum(t.ratio for t in terms)
    r = alpha * math.fsum(t.weighted for t in terms)
    return Assessment(terms=terms, s=s, alpha=alpha, r=r, exposed_population=exposed_population)


# ---------------------------------------------------------------------------------------------- per source


@dataclass(frozen=True, slots=True)
class TankInventory:
    """How much one tank counts for: design maximum, or level → mass (or missing)."""

    tank_id: str
    chemical: str
    q_t: float
    level_m: float | None  # live only
    missing: bool = False  # live only: no good level; the design maximum stands in (conservative)

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "tank_id": self.tank_id,
            "chemical": self.chemical,
            "q_t": self.q_t,
            "level_m": self.level_m,
            "missing": self.missing,
        }


@dataclass(frozen=True, slots=True)
class SourceHazard:
    """A hazard source's assessment with its basis (regulatory or live) and the per-tank quantities."""

    source_id: str
    basis: Basis
    assessment: Assessment
    tanks: tuple[TankInventory, ...]
    ts_ms: int | None = None  # live only: newest level used

    @property
    def label_zh(self) -> str:
        """Chinese label of the basis."""
        return BASIS_LABEL[self.basis][0]

    @property
    def label_en(self) -> str:
        """English label of the basis."""
        return BASIS_LABEL[self.basis][1]

    @property
    def complete(self) -> bool:
        """Live: every tank had a good level."""
        return not any(t.missing for t in self.tanks)

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "source_id": self.source_id,
            "basis": self.basis,
            "label_zh": self.label_zh,
            "label_en": self.label_en,
            "ts_ms": self.ts_ms,
            "complete": self.complete,
            **self.assessment.to_dict(),
            "tanks": [t.to_dict() for t in self.tanks],
        }


def find_source(site: Site, source_id: str) -> HazardSource:
    """A hazard source by id (KeyError naming it when unknown)."""
    for _, src in site.sources():
        if src.id == source_id:
            return src
    raise KeyError(f"unknown hazard source {source_id!r}")


def _source(site: Site, source: HazardSource | str) -> HazardSource:
    return find_source(site, source) if isinstance(source, str) else source


def _assess_tanks(source: HazardSource, tanks: list[TankInventory]) -> Assessment:
    contents: dict[str, float] = {}
    for t in tanks:
        contents[t.chemical] = contents.get(t.chemical, 0.0) + t.q_t
    return assess(contents, source.exposed_population)


def regulatory_levels(site: Site) -> dict[str, int | None]:
    """GB 18218 level of every hazard source from its design maximum quantities (alarm priorities use it)."""
    return {source.id: regulatory_assessment(site, source).assessment.level for _, source in site.sources()}


def regulatory_assessment(site: Site, source: HazardSource | str) -> SourceHazard:
    """The legal identification and level: every tank at its design maximum quantity (§4.2.2)."""
    src = _source(site, source)
    tanks = [TankInventory(t.id, t.chemical, float(t.design_max_t), None) for t in src.tanks]
    return SourceHazard(src.id, "regulatory", _assess_tanks(src, tanks), tuple(tanks))


def live_assessment(
    site: Site, source: HazardSource | str, latest_levels: Mapping[str, float], ts_ms: int | None = None
) -> SourceHazard:
    """The live indicator: each tank's level (m, by tank id) × geometry × density; no level → design maximum.

    Out-of-service tanks count at their measured level like the others (they may still hold product).
    """
    src = _source(site, source)
    tanks = []
    for tank in src.tanks:
        level = latest_levels.get(tank.id)
        if level is None or not math.isfinite(level):
            tanks.append(TankInventory(tank.id, tank.chemical, float(tank.design_max_t), None, missing=True))
        else:
            tanks.append(TankInventory(tank.id, tank.chemical, float(mass_t(tank, float(level))), float(level)))
    return SourceHazard(src.id, "live", _assess_tanks(src, tanks), tuple(tanks), ts_ms)


def _level_in_m(tank: Tank, value: float, unit: str) -> float | None:
    """A level reading in metres above the bottom; None for a unit we cannot convert."""
    u = unit.strip().casefold()
    if u == "m":
        return value
    if u == "mm":
        return value / 1000.0
    if u == "cm":
        return value / 100.0
    if u in ("%", "pct", "percent"):
        return value / 100.0 * height_m(tank.geometry)
    return None


def tank_levels(site: Site, latest: ReadingBatch) -> tuple[dict[str, float], int | None]:
    """Per tank, the highest good level among its level transmitters (conservative), and the newest ts used."""
    good = latest.quality == Quality.GOOD
    levels: dict[str, float] = {}
    newest: int | None = None
    sensors = site.sensors
    tanks = {t.id: t for _, _, t in site.tanks()}
    for i in np.flatnonzero(good).tolist():
        idx = int(latest.sensor[i])
        if not 0 <= idx < len(sensors):
            continue
        info = sensors[idx]
        if info.tank_id is None or info.sensor.kind != SensorKind.LEVEL:
            continue
        value = float(latest.value[i])
        if not math.isfinite(value):
            continue
        metres = _level_in_m(tanks[info.tank_id], value, info.sensor.unit)
        if metres is None:
            continue
        if metres > levels.get(info.tank_id, -math.inf):
            levels[info.tank_id] = metres
        ts = int(latest.ts_ms[i])
        newest = ts if newest is None else max(newest, ts)
    return levels, newest


def site_hazards(site: Site, latest: ReadingBatch | None = None) -> list[dict]:
    """Per source: the regulatory assessment and (when readings are given) the live one, side by side."""
    levels, ts = tank_levels(site, latest) if latest is not None else ({}, None)
    out = []
    for ent, src in site.sources():
        row = {
            "enterprise_id": ent.id,
            "source_id": src.id,
            "name": src.name,
            "regulatory": regulatory_assessment(site, src).to_dict(),
            "live": live_assessment(site, src, levels, ts).to_dict() if latest is not None else None,
        }
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------- live events


@dataclass(frozen=True, slots=True)
class HazardEvent:
    """A live-level transition of a hazard source: it became major, or its level rose (e.g. 三级 → 二级)."""

    id: str
    source_id: str
    ts_ms: int
    kind: Literal["became_major", "level_rose"]
    from_level: int | None
    to_level: int
    r: float
    s: float

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "id": self.id,
            "source_id": self.source_id,
            "ts_ms": self.ts_ms,
            "kind": self.kind,
            "from_level": self.from_level,
            "to_level": self.to_level,
            "r": self.r,
            "s": self.s,
            "text_zh": f"{self.source_id} 实时存量{'构成重大危险源' if self.kind == 'became_major' else '等级升高'}："
            f"{LEVEL_NAMES_ZH.get(self.from_level, '非重大') if self.from_level else '非重大'} → "
            f"{LEVEL_NAMES_ZH[self.to_level]}",
            "text_en": f"{self.source_id} live inventory "
            f"{'became a major hazard' if self.kind == 'became_major' else 'level rose'}: "
            f"{self.from_level or 'not major'} → level {self.to_level}",
        }


class HazardTracker:
    """Remembers each source's live level and reports only rises (becoming major, or a higher level)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.levels: dict[str, int | None] = {}  # last live level per source; absent: never assessed
        self.current: dict[str, SourceHazard] = {}

    def update(self, latest: ReadingBatch, ts_ms: int) -> list[HazardEvent]:
        """Re-assess every source from the latest readings; events for sources whose live level rose."""
        levels, _ = tank_levels(self.site, latest)
        events = []
        for _, src in self.site.sources():
            hazard = live_assessment(self.site, src, levels, ts_ms)
            self.current[src.id] = hazard
            new = hazard.assessment.level
            seen = src.id in self.levels
            old = self.levels.get(src.id)
            self.levels[src.id] = new
            if not seen or new is None:
                continue  # the first assessment sets the baseline; falling levels are not events
            if old is None or new < old:
                kind: Literal["became_major", "level_rose"] = "became_major" if old is None else "level_rose"
                a = hazard.assessment
                event_id = stable_id("hazard", src.id, kind, old, new, ts_ms)
                events.append(HazardEvent(event_id, src.id, ts_ms, kind, old, new, a.r, a.s))
        return events
