"""One builder for the small, valid site files tests need."""

from __future__ import annotations

from typing import Any

import yaml

from tankwatch.config import Site, parse_site

PERSON = {"name": "张三"}


def one_source_site(
    sensors: list[dict[str, Any]],
    devices: list[dict[str, Any]] | None = None,
    *,
    enterprise: str = "E1",
    source: str = "HS1",
) -> Site:
    """A park with one enterprise and one storage hazard source holding ``sensors``, plus ``devices``."""
    location = {"lat": 32.5, "lon": 121.2}
    data = {
        "park": {"id": "P1", "name": "测试园区", "location": location},
        "enterprises": [
            {
                "id": enterprise,
                "name": "测试企业",
                "location": location,
                "hazard_sources": [
                    {
                        "id": source,
                        "name": "罐区",
                        "unit_kind": "storage",
                        "location": location,
                        "exposed_population": 0,
                        "responsible": {"principal": PERSON, "technical": PERSON, "operational": PERSON},
                        "sensors": sensors,
                    }
                ],
            }
        ],
        "devices": devices or [],
    }
    return parse_site(yaml.safe_dump(data, allow_unicode=True), "<test site>")


def modbus_site(devices: list[dict[str, Any]]) -> Site:
    """A site whose sensors are exactly the points of the given Modbus devices (wide level ranges)."""
    ids = [p["sensor"] for d in devices for p in d["modbus"]["points"]]
    return one_source_site([{"id": s, "kind": "level", "unit": "m", "range": [-1e9, 1e9]} for s in ids], devices)
