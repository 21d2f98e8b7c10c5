"""Coding rules: default codes follow the platform pattern, pinned codes win, bad rules fail naming the field."""

from __future__ import annotations

import pytest
import yaml

from tankwatch.config import SiteError, parse_site
from tankwatch.site import CodingRules
from tests.sites import one_source_site
from tests.tiers_support import DEMO_SITE, demo_codes, demo_site
from tiers.coding import CodingError, SiteCodes


def test_default_codes_follow_the_division_code_and_serial_pattern() -> None:
    codes = demo_codes(demo_site())
    assert codes.company["E1"] == "32062300001" and len(codes.company["E1"]) == 11
    assert codes.hazard["HS1"] == "32062300001001" and len(codes.hazard["HS1"]) == 14
    t101 = codes.points["T101-LT-A"]
    assert (t101.equip, t101.target, t101.gateway) == ("32062300001001G0001", "32062300001001G000101",
                                                        "32062300001W01")
    assert len(t101.equip) == 19  # equipCode varchar(19)
    detector = codes.points["HS1-GD03"]
    assert codes.equip_type["HS1-GD03"] == "Q0" and detector.equip.startswith("32062300001001Q0")
    assert detector.target == detector.equip + "01"
    site = one_source_site([{"id": "XV1", "kind": "esd_valve", "unit": "-", "range": [0, 2]},
                            {"id": "GD1", "kind": "gas_combustible", "unit": "%LEL", "range": [0, 100]}])
    types = SiteCodes.build(site, CodingRules(district_code="320623", equip_types={"esd_valve": "F1"})).equip_type
    assert (types["XV1"], types["GD1"]) == ("F1", "Q0")  # the types not given keep their defaults


def test_pinned_codes_win_and_children_follow_them() -> None:
    rules = CodingRules(district_code="320623", codes={"E1": "320600123", "T101-LT-A": "ABC"})
    codes = SiteCodes.build(demo_site(), rules)
    assert codes.company["E1"] == "320600123" and codes.hazard["HS1"] == "320600123001"
    assert codes.points["T101-LT-A"].target == "ABC"
    assert codes.enterprise_of_code()["320600123"] == "E1"


@pytest.mark.parametrize(("rules", "says"), [
    ({"codes": {"E9": "X1"}}, "uplink.coding.codes.E9: no enterprise"),
    ({"codes": {"E1": "32062300002"}}, "uplink.coding.company: 'E1' and 'E2' both get code '32062300002'"),
    ({"target": "{equip}{serial:01d}", "codes": {"T101-LT-A": "32062300001001G00012"}}, "both get code"),
    ({"company": "{district}-{serial}"}, "which is not 1 to 32 letters and digits"),
])
def test_codes_that_cannot_work_are_refused(rules: dict, says: str) -> None:
    with pytest.raises(CodingError, match=says):
        SiteCodes.build(demo_site(), CodingRules(district_code="320623", **rules))


def site_with(section: dict) -> str:
    data = yaml.safe_load(DEMO_SITE.read_text(encoding="utf-8"))
    data.update(section)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


TARGET = {"id": "city", "url": "https://platform.example/api", "app_id_env": "TW_APP", "key_env": "TW_KEY"}
SENDER = {"app_id_env": "E1_APP", "key_env": "E1_KEY", "enterprises": ["32062300001"]}


def test_uplink_and_receiver_sections_load_with_defaults() -> None:
    site = parse_site(site_with({"uplink": {"coding": {"district_code": "320623"}, "targets": [TARGET]},
                                 "receiver": {"senders": [SENDER]}}))
    target = site.file.uplink.targets[0]
    assert (target.transport, target.encryption, target.periods.realtime_s, target.periods.heartbeat_s,
            target.ack_timeout_s, target.queue_days) == ("http", "none", 10, 60, 10, 7)
    assert site.file.receiver.http_port == 8600 and site.file.receiver.tcp_port is None


@pytest.mark.parametrize(("section", "says"), [
    ({"uplink": {"coding": {"district_code": "3206"}, "targets": [TARGET]}}, "uplink.coding.district_code"),
    ({"uplink": {"coding": {"district_code": "320623", "hazard": "{company}{n}"}, "targets": [TARGET]}},
     "unknown placeholder"),
    ({"uplink": {"coding": {"district_code": "320623", "gateway": "{company}"}, "targets": [TARGET]}},
     "needs {serial}"),
    ({"uplink": {"coding": {"district_code": "320623"}, "targets": [{**TARGET, "transport": "tcp"}]}},
     "a tcp target needs 'host' and 'port'"),
    ({"uplink": {"coding": {"district_code": "320623"}, "targets": [{**TARGET, "iv_env": "IV"}]}},
     "'iv_env' only applies to encryption: sm4"),
    ({"uplink": {"coding": {"district_code": "320623"}, "targets": [{**TARGET, "key": "secret"}]}},
     "uplink.targets[0].key: unknown key"),
    ({"uplink": {"coding": {"district_code": "320623"}, "targets": [{**TARGET, "key_env": "1BAD"}]}},
     "uplink.targets[0].key_env"),
    ({"uplink": {"coding": {"district_code": "320623"}, "targets": [TARGET, TARGET]}}, "duplicate target id"),
    ({"uplink": {"coding": {"district_code": "320623"}, "targets": [{**TARGET, "queue_days": 3}]}},
     "queue_days"),
    ({"uplink": {"coding": {"district_code": "320623", "equip_types": {"tnak": "G1"}}, "targets": [TARGET]}},
     "equip_types: unknown key(s) ['tnak']"),
    ({"receiver": {"http_port": None, "senders": [SENDER]}}, "needs http_port, tcp_port or both"),
    ({"receiver": {"senders": [SENDER, SENDER]}}, "duplicate app_id_env"),
    ({"receiver": {"senders": [{**SENDER, "enterprises": []}]}}, "receiver.senders[0].enterprises"),
])
def test_bad_tier_settings_fail_at_load_naming_the_field(section: dict, says: str) -> None:
    with pytest.raises(SiteError) as info:
        parse_site(site_with(section), "park.yaml")
    assert says in str(info.value) and str(info.value).startswith("park.yaml:")
