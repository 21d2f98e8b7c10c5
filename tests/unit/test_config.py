"""Site-file validation: one clear line naming file, line and field for every kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tankwatch.config import SiteError, load_site, parse_site
from tankwatch_app.cli import app

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo-park.yaml"
TEXT = DEMO.read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    """1-based line of the first occurrence of ``needle``."""
    return text[: text.index(needle)].count("\n") + 1


def test_demo_park_meets_the_skeleton_minimums():
    site = load_site(DEMO)
    assert len(site.enterprises) >= 3
    assert len(list(site.sources())) >= 4
    assert len(list(site.tanks())) >= 20
    assert len(site.sensors) >= 120
    gas = {"gas_combustible", "gas_toxic", "oxygen"}
    for info in site.sensors:
        device = next(d for d in site.devices if d.id == info.device_id)
        assert (device.mqtt is not None) == (info.sensor.kind in gas), info.sensor.id


def edit(old: str, new: str) -> str:
    """The demo text with the first ``old`` replaced."""
    assert old in TEXT
    return TEXT.replace(old, new, 1)


CASES = [
    pytest.param(
        edit("    unit_kind: storage\n", "    unit_kind: storage\n    colour: red\n"),
        "colour: red",
        "enterprises[0].hazard_sources[0].colour",
        "unknown key",
        id="unknown-key",
    ),
    pytest.param(
        edit("    - id: T102\n", "    - id: T101\n"),
        "- id: T101\n      name: 2#",
        "enterprises[0].hazard_sources[0].tanks[1].id",
        "duplicate id 'T101'",
        id="duplicate-id",
    ),
    pytest.param(
        edit("{sensor: T101-XV, address: 5,", "{sensor: T101-XV, address: 128,"),
        "address: 128",
        "devices[0].modbus.points[3].address",
        "outside the device's holding map of 128 registers",
        id="register-outside-map",
    ),
    pytest.param(
        edit("{sensor: T101-XV, address: 5,", "{sensor: T101-XV, address: 4,"),
        "address: 4, type: uint16",
        "devices[0].modbus.points[3].address",
        "already used by sensor T101-TT",
        id="register-overlap",
    ),
    pytest.param(
        edit("diameter_m: 28\n", "diameter_m: wide\n"),
        "diameter_m: wide",
        "enterprises[0].hazard_sources[0].tanks[0].geometry.diameter_m",
        "valid number",
        id="bad-type",
    ),
    pytest.param(
        edit("type: int16, scale: 0.1}", "type: int12, scale: 0.1}"),
        "int12",
        "devices[0].modbus.points[2].type",
        "got 'int12'",
        id="bad-enum",
    ),
    pytest.param(
        edit("    exposed_population: 40\n", ""),
        "  - id: HS1",
        "enterprises[0].hazard_sources[0].exposed_population",
        "missing required key",
        id="missing-key",
    ),
    pytest.param(
        edit("hh: 15.04, h: 14.08", "hh: 14.0, h: 14.08"),
        "hh: 14.0, h: 14.08",
        "enterprises[0].hazard_sources[0].tanks[0].sensors[0].limits",
        "limits must increase",
        id="limits-order",
    ),
    pytest.param(
        edit("    unit_kind: storage\n", "    unit_kind: storage\n    unit_kind: production\n"),
        "unit_kind: production",
        "enterprises[0].hazard_sources[0].unit_kind",
        "duplicate key",
        id="duplicate-key",
    ),
    pytest.param(
        edit("    - HS1-GD02\n", "    - HS1-GD99\n"),
        "HS1-GD99",
        "devices[1].mqtt.sensors[1]",
        "unknown sensor 'HS1-GD99'",
        id="unknown-sensor",
    ),
    pytest.param(
        edit("      name: 罐区可燃气体探测器1\n", "      name: 罐区可燃气体探测器1\n      gas_limits: {first: 30}\n"),
        "gas_limits: {first: 30}",
        "enterprises[0].hazard_sources[0].sensors[0].gas_limits.first",
        "exceeds 25 %LEL",
        id="combustible-first-level-above-25",
    ),
    pytest.param(
        edit("  name: 液化烃球罐区 气体报警控制器\n", "  name: 液化烃球罐区 气体报警控制器\n"
             "  kafka: {bootstrap: ['127.0.0.1:9092'], topic: gds-hs2, sensors: [HS2-GD01]}\n"),
        "- id: gds-HS2",
        "devices[3]",
        "exactly one of 'modbus', 'mqtt' or 'kafka'",
        id="kafka-and-mqtt",
    ),
    pytest.param(
        edit("  mqtt:\n    broker: {host: 127.0.0.1, port: 1883}\n    topic: tankwatch/demo/HS2/gas/{sensor}\n"
             "    qos: 1\n", "  kafka:\n    bootstrap: ['kafka1:99999']\n    topic: gds-hs2\n"),
        "kafka1:99999",
        "devices[3].kafka.bootstrap",
        "a port is 1..65535",
        id="kafka-port",
    ),
    pytest.param(
        edit("  mqtt:\n    broker: {host: 127.0.0.1, port: 1883}\n    topic: tankwatch/demo/HS3/gas/{sensor}\n"
             "    qos: 1\n", "  kafka:\n    bootstrap: ['kafka1:9092']\n    topic: gds\n").replace(
            "  mqtt:\n    broker: {host: 127.0.0.1, port: 1883}\n    topic: tankwatch/demo/HS2/gas/{sensor}\n"
            "    qos: 1\n", "  kafka:\n    bootstrap: ['kafka1:9092']\n    topic: gds\n", 1),
        "topic: gds\n    sensors:\n    - HS3",
        "devices[5].kafka.topic",
        "topic 'gds' already feeds device 'gds-HS2'",
        id="kafka-topic-shared",
    ),
    pytest.param(
        edit("  name: 江海石化储运有限公司", "  name: [江海"),
        "[江海",
        "",
        "invalid YAML",
        id="yaml-syntax",
    ),
]


@pytest.mark.parametrize(("text", "needle", "path", "message"), CASES)
def test_errors_name_file_line_and_field(text, needle, path, message):
    with pytest.raises(SiteError) as info:
        parse_site(text, "park.yaml")
    error = info.value
    assert str(error).startswith(f"park.yaml:{line_of(text, needle)}: {path + ': ' if path else ''}")
    assert message in str(error)
    assert "\n" not in str(error)


def test_check_command_exit_codes(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(DEMO)])
    assert ok.exit_code == 0
    assert "122 sensors" in ok.output and ok.output.count("\n") == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(edit("    unit_kind: storage\n", "    unit_kind: storage\n    colour: red\n"), encoding="utf-8")
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 1
    line = TEXT.splitlines().index("    unit_kind: storage") + 2
    assert result.output.strip() == f"{bad}:{line}: enterprises[0].hazard_sources[0].colour: unknown key"
    missing = runner.invoke(app, ["check", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "cannot read" in missing.output
