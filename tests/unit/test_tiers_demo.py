"""The tiers demo's site files: every tier valid, each enterprise's part of the scenario fits its instance, and the
enterprises number their codes as the park and the county do."""

from __future__ import annotations

from pathlib import Path

from simulators.scenario import load_scenario
from tankwatch.config import load_site
from tankwatch_app.tiers_demo import tier_sites
from tests.tiers_support import demo_site
from tiers.coding import SiteCodes


def test_every_tier_loads_and_the_codes_agree(tmp_path: Path) -> None:
    instances, env = tier_sites(demo_site(), tmp_path, 18000, "demo")
    by_name = {i.name: i for i in instances}
    assert list(by_name) == ["park", "county", "e1", "e2", "e3"]
    park = load_site(by_name["park"].site)
    assert park.file.uplink is not None and park.file.receiver is not None and not park.devices
    assert set(park.file.reported_enterprises()) == {"E1", "E2", "E3"}
    county = load_site(by_name["county"].site)
    assert county.file.reported_enterprises() == park.file.reported_enterprises()
    park_codes = SiteCodes.build(park, park.file.uplink.coding)
    for name in ("e1", "e2", "e3"):
        site = load_site(by_name[name].site)
        [ent] = site.enterprises
        assert site.devices and all(info.enterprise_id == ent.id for info in site.sensors)
        codes = SiteCodes.build(site, site.file.uplink.coding)
        assert {k: v.target for k, v in codes.points.items()} == {
            k: v.target for k, v in park_codes.points.items() if k in codes.points}  # gateways are the enterprise's
        plan = by_name[name].args[by_name[name].args.index("--scenario") + 1]
        assert load_scenario(plan, site).actions  # its part of the demo scenario, valid for its site
    assert all(value for value in env.values()) and len(env) == 8  # an appId and a key per link
