"""Coding rules applied to a site: the platform code of every enterprise, hazard source, equipment, point, gateway."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tankwatch.config import Site
from tankwatch.site import CodingRules

_CODE = re.compile(r"^[A-Za-z0-9]{1,32}$")


class CodingError(ValueError):
    """Coding rules that do not give every entity one valid, unique code; names the entity and the rule."""


@dataclass(frozen=True, slots=True)
class PointCodes:
    """Where a point sits, in platform codes."""

    company: str
    hazard: str
    equip: str
    target: str
    gateway: str | None


@dataclass(frozen=True)
class SiteCodes:
    """Every platform code of one site, built once from its coding rules (CodingError at build time)."""

    company: dict[str, str]  # enterprise id → companyCode
    hazard: dict[str, str]  # hazard source id → hazardCode
    equip: dict[str, str]  # tank id, or sensor id of a source-level instrument → equipCode
    equip_type: dict[str, str]  # same keys → equipType
    points: dict[str, PointCodes]  # sensor id → codes
    gateway: dict[str, str]  # device id → gatewayCode
    district_code: str

    @classmethod
    def build(cls, site: Site, rules: CodingRules) -> SiteCodes:
        """Apply ``rules`` to ``site``: templates with 1-based file-order serials, explicit ``codes`` first."""
        kinds = _ids_by_kind(site)
        for local_id in rules.codes:
            named = [kind for kind, ids in kinds.items() if local_id in ids]
            if not named:
                raise CodingError(f"uplink.coding.codes.{local_id}: no enterprise, hazard source, tank, sensor or "
                                  "device has this id")
            if len(named) > 1:
                raise CodingError(f"uplink.coding.codes.{local_id}: the id names a {' and a '.join(named)}; "
                                  "give distinct ids to pin a code")

        def code(kind: str, local_id: str, **fields: object) -> str:
            if local_id in rules.codes:
                return rules.codes[local_id]
            template = getattr(rules, kind)
            try:
                made = template.format(**fields)
            except (ValueError, KeyError, IndexError) as exc:
                raise CodingError(f"uplink.coding.{kind}: template {template!r} fails for {local_id!r}: {exc}") \
                    from None
            if not _CODE.match(made):
                raise CodingError(f"uplink.coding.{kind}: {local_id!r} gets code {made!r}, which is not 1 to 32 "
                                  "letters and digits")
            return made

        company: dict[str, str] = {}
        hazard: dict[str, str] = {}
        equip: dict[str, str] = {}
        equip_type: dict[str, str] = {}
        points: dict[str, tuple[str, str, str, str]] = {}
        for e, ent in enumerate(site.enterprises, 1):
            company[ent.id] = c = code("company", ent.id, district=rules.district_code, serial=e)
            for h, src in enumerate(ent.hazard_sources, 1):
                hazard[src.id] = hz = code("hazard", src.id, company=c, serial=h)
                serial = 0
                for tank in src.tanks:
                    serial += 1
                    kind = rules.equip_types["tank"]
                    equip[tank.id] = eq = code("equip", tank.id, hazard=hz, type=kind, serial=serial)
                    equip_type[tank.id] = kind
                    for t, sensor in enumerate(tank.sensors, 1):
                        points[sensor.id] = (c, hz, eq, code("target", sensor.id, equip=eq, serial=t))
                for sensor in src.sensors:
                    serial += 1
                    kind = rules.equip_types[sensor.kind.value]
                    # the instrument is its own equipment; pinning the sensor's id pins its point's code
                    equip[sensor.id] = eq = code("equip", f"equip:{sensor.id}", hazard=hz, type=kind, serial=serial)
                    equip_type[sensor.id] = kind
                    points[sensor.id] = (c, hz, eq, code("target", sensor.id, equip=eq, serial=1))
        gateway: dict[str, str] = {}
        serial_of: dict[str, int] = {}
        owner_of: dict[str, str] = {}
        for info in site.sensors:
            if info.device_id is not None:
                owner_of.setdefault(info.device_id, info.enterprise_id)
        for device in site.devices:
            owner = owner_of.get(device.id)
            if owner is None:
                continue
            serial_of[owner] = serial_of.get(owner, 0) + 1
            gateway[device.id] = code("gateway", device.id, company=company[owner], serial=serial_of[owner])
        by_sensor = {info.sensor.id: gateway.get(info.device_id) if info.device_id else None for info in site.sensors}
        built = cls(
            company=company,
            hazard=hazard,
            equip=equip,
            equip_type=equip_type,
            points={sid: PointCodes(*codes, by_sensor[sid]) for sid, codes in points.items()},
            gateway=gateway,
            district_code=rules.district_code,
        )
        built._check_unique()
        return built

    def _check_unique(self) -> None:
        """Two entities of one kind never share a code."""
        tables = {
            "company": self.company,
            "hazard": self.hazard,
            "equip": self.equip,
            "target": {k: v.target for k, v in self.points.items()},
            "gateway": self.gateway,
        }
        for kind, table in tables.items():
            seen: dict[str, str] = {}
            for local_id, code in table.items():
                if code in seen:
                    raise CodingError(f"uplink.coding.{kind}: {seen[code]!r} and {local_id!r} both get code "
                                      f"{code!r}; widen the serial or pin codes in uplink.coding.codes")
                seen[code] = local_id

    def enterprise_of_code(self) -> dict[str, str]:
        """companyCode → enterprise id."""
        return {v: k for k, v in self.company.items()}


def _ids_by_kind(site: Site) -> dict[str, set[str]]:
    """Ids a ``codes`` entry may name, by kind."""
    return {
        "enterprise": {e.id for e in site.enterprises},
        "hazard source": {s.id for _, s in site.sources()},
        "tank": {t.id for _, _, t in site.tanks()},
        "sensor": {info.sensor.id for info in site.sensors},
        "device": {d.id for d in site.devices},
    }

