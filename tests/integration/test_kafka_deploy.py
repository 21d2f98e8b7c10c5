"""deploy/: the compose file's structure (no Docker engine here), its secrets, Grafana provisioning, and the
systemd units — each stage command must be one the CLI accepts."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from tankwatch_app import stages_cli
from tankwatch_app.runtime import STAGES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TANKWATCH_SERVICES = {"ingest", "alarms", "historian", "dashboard"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {k: v for k, v in pairs}


def cli() -> typer.Typer:
    app = typer.Typer()
    bench = typer.Typer()
    app.add_typer(bench, name="bench")
    stages_cli.register(app, bench)
    return app


def test_compose_has_every_service_and_each_stage_alone(compose: dict) -> None:
    services = compose["services"]
    assert {"mosquitto", "kafka", "influxdb", "postgres", "grafana"} | TANKWATCH_SERVICES <= set(services)
    assert services["grafana"]["profiles"] == ["grafana"]  # optional
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    influx = services["influxdb"]
    assert influx["image"].startswith("influxdb:2.7")
    for key in ("MODE", "ORG", "BUCKET", "ADMIN_TOKEN", "USERNAME", "PASSWORD"):
        assert f"DOCKER_INFLUXDB_INIT_{key}" in influx["environment"]
    for name in TANKWATCH_SERVICES:
        service = services[name]
        command = service["command"]
        assert command[:2] == ["run", name] and name in STAGES
        assert "--config" in command
        assert service["environment"]["TANKWATCH_BUS"].startswith("kafka://kafka:")
        assert any(v.endswith(":/etc/tankwatch/site.yaml:ro") for v in service["volumes"])
    assert services["alarms"]["deploy"]["replicas"]


def test_compose_references_resolve(compose: dict) -> None:
    services = compose["services"]
    volumes = set(compose["volumes"])
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            elif not source.startswith("$"):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
    healthy = {dep for s in services.values() for dep, c in s.get("depends_on", {}).items()
               if c.get("condition") == "service_healthy"}
    assert all("healthcheck" in services[name] for name in healthy)


def test_every_variable_has_an_example_and_secrets_are_placeholders(compose: dict) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)(?::-[^}]*)?\}", text))
    defaults = set(re.findall(r"\$\{([A-Z0-9_]+):-", text))
    example = env_example()
    assert used - defaults <= set(example), f"not in .env.example: {sorted(used - defaults - set(example))}"
    for key, value in example.items():
        if any(word in key for word in ("PASSWORD", "TOKEN", "SECRET")):
            assert value == "CHANGE-ME", f"{key} must be a placeholder in .env.example"


def test_grafana_provisioning_points_at_the_influxdb_service() -> None:
    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/influxdb.yaml").read_text())
    (datasource,) = source["datasources"]
    assert datasource["url"] == "http://influxdb:8086" and datasource["jsonData"]["version"] == "Flux"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/tankwatch.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DEPLOY / "grafana/dashboards/tankwatch-park.json").read_text())
    queries = [t["query"] for p in dashboard["panels"] for t in p["targets"]]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {datasource["uid"]}
    for measurement in ("readings", "alarm_events", "grades"):
        assert any(f'r._measurement == "{measurement}"' in q for q in queries)


def test_systemd_units_run_each_stage_with_a_command_the_cli_accepts() -> None:
    units = {p.name: p.read_text() for p in (DEPLOY / "systemd").glob("*.service")}
    assert set(units) == {"tankwatch-ingest.service", "tankwatch-alarms@.service", "tankwatch-historian.service",
                          "tankwatch-dashboard.service"}
    app = cli()
    runner = CliRunner()
    for name, text in units.items():
        (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
        argv = shlex.split(exec_start.removeprefix("ExecStart="))
        assert argv[0].endswith("/tankwatch") and argv[1] == "run" and argv[2] in STAGES
        assert argv[2] in name
        args = [a if not a.startswith("${") else "1" for a in argv[1:]] + ["--help"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "EnvironmentFile=/etc/tankwatch/tankwatch.env" in text


def test_compose_commands_are_ones_the_cli_accepts(compose: dict) -> None:
    runner = CliRunner()
    app = cli()
    for name in TANKWATCH_SERVICES:
        result = runner.invoke(app, [*compose["services"][name]["command"], "--help"])
        assert result.exit_code == 0, result.output


def test_dockerfile_installs_the_distributed_extra_and_runs_tankwatch() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'pip install ".[distributed]"' in text
    assert 'ENTRYPOINT ["tankwatch"]' in text
    assert "USER tankwatch" in text
