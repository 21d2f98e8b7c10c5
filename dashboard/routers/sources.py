"""GET /api/sources: the park tree the page draws; GET /api/sources/{id}/hazard: GB 18218 assessment."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from alarms.hazard import live_assessment, reference, regulatory_assessment, tank_levels
from dashboard.routers.deps import AUTH_RESPONSES, ErrorOut, ScopeDep, SiteDep, TimeSeriesDep
from tankwatch.config import SensorInfo, Site
from tankwatch.site import GasLimits, Geometry, Limits, Location, SensorKind, Tank, UnitKind

router = APIRouter(tags=["sources"])

# GB/T 50493-2019 §5.5.2 defaults shown when the site file sets none: combustible 25/50 %LEL, O2 19.5/23.5 %VOL.
# Toxic gases need a per-gas table (1×/2× OEL) and stay unset until the site gives them.
DEFAULT_GAS_LIMITS = {
    SensorKind.GAS_COMBUSTIBLE: GasLimits(first=25, second=50),
    SensorKind.OXYGEN: GasLimits(low=19.5, high=23.5),
}


class SensorOut(BaseModel):
    """A sensor with everything needed to show and judge its value."""

    id: str
    index: int
    name: str | None
    kind: SensorKind
    unit: str
    range: tuple[float, float]
    limits: Limits | None
    gas: str | None
    gas_limits: GasLimits | None
    gas_limits_default: bool  # true when gas_limits are the standard's defaults, not the site file's
    expected_period_s: float
    stale_after_s: float  # a value older than this is not live (its comm-loss time)
    device_id: str | None
    location: Location | None  # where the map shows it, when the site file says


class TankOut(BaseModel):
    """A tank, its geometry and its instruments."""

    id: str
    name: str | None
    chemical: str
    geometry: Geometry
    height_m: float  # full level span of the vessel
    density_t_m3: float
    design_max_t: float
    pressurised: bool
    in_service: bool
    location: Location | None  # where the map shows it, when the site file says
    sensors: list[SensorOut]


class PersonOut(BaseModel):
    """A responsible person's name and phone."""

    name: str
    phone: str | None


class ResponsibleOut(BaseModel):
    """主要/技术/操作负责人."""

    principal: PersonOut
    technical: PersonOut
    operational: PersonOut


class HazardSourceOut(BaseModel):
    """A major hazard source with its tanks and its source-level sensors (gas detectors, ESD)."""

    id: str
    name: str
    unit_kind: UnitKind
    location: Location
    exposed_population: int
    responsible: ResponsibleOut
    tanks: list[TankOut]
    sensors: list[SensorOut]


class EnterpriseOut(BaseModel):
    """An enterprise and its hazard sources."""

    id: str
    name: str
    location: Location
    outline: list[Location]  # the site boundary; empty: the map draws a hull of its hazard sources
    hazard_sources: list[HazardSourceOut]
    # companyCode under which a lower tier reports it (its alarms are handled there); None: monitored here
    reported_as: str | None = None


class ParkOut(BaseModel):
    """The park."""

    id: str
    name: str
    county: str | None
    city: str | None
    location: Location
    outline: list[Location]


class SourcesOut(BaseModel):
    """The whole tree."""

    park: ParkOut
    enterprises: list[EnterpriseOut]
    sensor_count: int


def tank_height_m(tank: Tank) -> float:
    """Full level span: cylinder height, horizontal or sphere diameter, or the top of the strapping table."""
    geometry = tank.geometry
    if geometry.kind == "vertical_cylinder":
        return geometry.height_m
    if geometry.kind == "strapping_table":
        return geometry.points[-1][0]
    return geometry.diameter_m


def _sensor(info: SensorInfo) -> SensorOut:
    s = info.sensor
    default = s.gas_limits is None and s.kind in DEFAULT_GAS_LIMITS
    return SensorOut(
        id=s.id,
        index=info.index,
        name=s.name,
        kind=s.kind,
        unit=s.unit,
        range=s.range,
        limits=s.limits,
        gas=s.gas,
        gas_limits=DEFAULT_GAS_LIMITS[s.kind] if default else s.gas_limits,
        gas_limits_default=default,
        expected_period_s=s.expected_period_s,
        stale_after_s=s.stale_after_s,
        device_id=info.device_id,
        location=s.location,
    )


def _person(p) -> PersonOut:  # noqa: ANN001 - tankwatch.site.Person
    return PersonOut(name=p.name, phone=p.phone)


def sources_tree(site: Site) -> SourcesOut:
    """Build the tree once per site (it never changes while the app runs)."""
    by_id = {info.sensor.id: info for info in site.sensors}
    park = site.file.park
    reported = site.file.reported_enterprises()
    enterprises = []
    for ent in site.enterprises:
        sources = []
        for src in ent.hazard_sources:
            tanks = [
                TankOut(
                    id=t.id,
                    name=t.name,
                    chemical=t.chemical,
                    geometry=t.geometry,
                    height_m=tank_height_m(t),
                    density_t_m3=t.density_t_m3,
                    design_max_t=t.design_max_t,
                    pressurised=t.pressurised,
                    in_service=t.in_service,
                    location=t.location,
                    sensors=[_sensor(by_id[s.id]) for s in t.sensors],
                )
                for t in src.tanks
            ]
            r = src.responsible
            sources.append(
                HazardSourceOut(
                    id=src.id,
                    name=src.name,
                    unit_kind=src.unit_kind,
                    location=src.location,
                    exposed_population=src.exposed_population,
                    responsible=ResponsibleOut(
                        principal=_person(r.principal),
                        technical=_person(r.technical),
                        operational=_person(r.operational),
                    ),
                    tanks=tanks,
                    sensors=[_sensor(by_id[s.id]) for s in src.sensors],
                )
            )
        enterprises.append(EnterpriseOut(id=ent.id, name=ent.name, location=ent.location, outline=ent.outline,
                                         hazard_sources=sources, reported_as=reported.get(ent.id)))
    return SourcesOut(
        park=ParkOut(
            id=park.id,
            name=park.name,
            county=park.county,
            city=park.city,
            location=park.location,
            outline=park.outline,
        ),
        enterprises=enterprises,
        sensor_count=len(site.sensors),
    )


@router.get("/api/sources", response_model=SourcesOut, responses=AUTH_RESPONSES)
def sources(request: Request, site: SiteDep, scope: ScopeDep) -> SourcesOut:
    """Park → enterprises → hazard sources → tanks and sensors, limited to the enterprises the caller may see."""
    state = request.app.state
    if getattr(state, "sources_tree", None) is None:
        state.sources_tree = sources_tree(site)  # the site never changes while the app runs
    tree: SourcesOut = state.sources_tree
    visible = [e for e in tree.enterprises if scope.allows(e.id)]
    count = sum(len(t.sensors) for e in visible for s in e.hazard_sources for t in s.tanks) + sum(
        len(s.sensors) for e in visible for s in e.hazard_sources
    )
    return SourcesOut(park=tree.park, enterprises=visible, sensor_count=count)


# ---------------------------------------------------------------------------------------------- hazard


class HazardTermOut(BaseModel):
    """One chemical's share of a unit: q/Q and β·q/Q, with confidence tags of the reference data."""

    chemical: str
    name_zh: str
    name_en: str
    cas: list[str]
    keys: list[str]
    table: str
    symbol: str | None
    q_t: float
    critical_t: float
    beta: float
    ratio: float
    weighted: float
    tag: str
    beta_tag: str


class TankInventoryOut(BaseModel):
    """A tank's quantity in the assessment (live: from its level; missing: design maximum stands in)."""

    tank_id: str
    chemical: str
    q_t: float
    level_m: float | None
    missing: bool


class HazardAssessmentOut(BaseModel):
    """GB 18218-2018 S, R and level of a source on one basis (regulatory or live), clearly labelled."""

    source_id: str
    basis: Literal["regulatory", "live"]
    label_zh: str
    label_en: str
    ts_ms: int | None
    complete: bool
    s: float
    r: float
    alpha: float
    exposed_population: int
    is_major: bool
    level: int | None
    level_zh: str
    terms: list[HazardTermOut]
    tanks: list[TankInventoryOut]


class SourceHazardOut(BaseModel):
    """The legal (design maximum) and the live (level × density) assessment of a hazard source, kept apart."""

    source_id: str
    enterprise_id: str
    name: str
    reference: str
    regulatory: HazardAssessmentOut
    live: HazardAssessmentOut


@router.get(
    "/api/sources/{source_id}/hazard",
    response_model=SourceHazardOut,
    responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "Unknown hazard source"}},
)
def source_hazard(source_id: str, scope: ScopeDep, timeseries: TimeSeriesDep) -> SourceHazardOut:
    """GB 18218-2018 identification and grading of one hazard source: regulatory and live."""
    ent, src = scope.require_source(source_id)
    levels, ts = tank_levels(scope.site, timeseries.latest())
    return SourceHazardOut(
        source_id=src.id,
        enterprise_id=ent.id,
        name=src.name,
        reference=reference().version,
        regulatory=HazardAssessmentOut(**regulatory_assessment(scope.site, src).to_dict()),
        live=HazardAssessmentOut(**live_assessment(scope.site, src, levels, ts).to_dict()),
    )
