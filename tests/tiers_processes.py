"""Site files and process helpers for tests that run tiers as real processes: enterprise instances (`tankwatch demo`
with their part of the demo park) uplinking to a park instance (`tankwatch run`) that has them only through its
receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from tankwatch_app.runtime import scenario_within
from tests.tiers_support import DEMO_SITE, KEYS

PASSWORD = "a-password-at-the-park"


class Link(NamedTuple):
    """One enterprise instance and how it uplinks to the park: transport (http|tcp), encryption, its scenario."""

    enterprise: str
    transport: str
    encryption: str
    scenario: str | Path


def company_code(links: Sequence[Link], enterprise: str) -> str:
    """The company code an enterprise uplinks under: district 320623 + a serial by its place in ``links``."""
    return f"3206230000{[link.enterprise for link in links].index(enterprise) + 1}"


def _mentions(node: Any, ids: set[str]) -> bool:
    if isinstance(node, dict):
        return any(_mentions(v, ids) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(v, ids) for v in node)
    return isinstance(node, str) and node in ids


def site_files(folder: Path, links: Sequence[Link], http_port: int,
               tcp_port: int) -> tuple[list[tuple[Path, Path]], Path]:
    """Each enterprise's site (its devices, an uplink to the park) with its scenario, and the park's site (the
    enterprises reported, no devices)."""
    park = yaml.safe_load(DEMO_SITE.read_text(encoding="utf-8"))
    common = {k: park[k] for k in ("version", "park", "regulators", "escalation") if k in park}
    by_id = {e["id"]: e for e in park["enterprises"]}
    enterprises, senders = [], []
    for ent, transport, encryption, scenario in links:
        code = company_code(links, ent)
        sensors = {s["id"] for src in by_id[ent]["hazard_sources"] for s in src.get("sensors", []) + [
            s for tank in src.get("tanks", []) for s in tank["sensors"]]}
        where = {"url": f"http://127.0.0.1:{http_port}"} if transport == "http" else {
            "transport": "tcp", "host": "127.0.0.1", "port": tcp_port}
        site = {
            **common, "enterprises": [by_id[ent]], "devices": [d for d in park["devices"] if _mentions(d, sensors)],
            "users": [u for u in park["users"] if u["login"] == "admin"],
            "uplink": {"coding": {"district_code": "320623", "codes": {ent: code}}, "targets": [{
                "id": "park", **where, "encryption": encryption, "app_id_env": f"TW_{ent}_APP_ID",
                "key_env": f"TW_{ent}_KEY", "backoff_initial_s": 0.2, "backoff_max_s": 1,
                "periods": {"realtime_s": 1, "heartbeat_s": 5}}]},
        }
        path = _write(folder / f"{ent}.yaml", site)
        plan = scenario_within(str(scenario), path, folder / f"{ent}-scenario.yaml")
        enterprises.append((path, plan))
        senders.append({"app_id_env": f"TW_{ent}_APP_ID", "key_env": f"TW_{ent}_KEY", "encryption": encryption,
                        "enterprises": [code], "local_enterprises": {code: ent}, "realtime_s": 1})
    park_site = {
        **common, "enterprises": [by_id[link.enterprise] for link in links], "devices": [],
        "users": [{"login": "op-e1", "name": "E1 operator", "role": "operator", "scope": {"enterprises": ["E1"]},
                   "password_env": "TW_TEST_PASSWORD"},
                  {"login": "park-reg", "name": "park regulator", "role": "park_regulator",
                   "scope": {"park": park["park"]["id"]}, "password_env": "TW_TEST_PASSWORD"}],
        "storage": {"data_dir": str(folder / "park")},
        "receiver": {"host": "127.0.0.1", "http_port": http_port, "tcp_port": tcp_port, "senders": senders},
    }
    return enterprises, _write(folder / "park.yaml", park_site)


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def tiers_env(links: Sequence[Link]) -> dict[str, str]:
    """The environment every instance runs with: the park's users' password, keys, and each link's appId and key."""
    env = {**os.environ, "TW_TEST_PASSWORD": PASSWORD, "TANKWATCH_AUDIT_KEY": "k" * 40,
           "TANKWATCH_SECRET_KEY": "s" * 40}
    for ent, _, encryption, _ in links:
        env |= {f"TW_{ent}_APP_ID": f"ent-{ent}", f"TW_{ent}_KEY": "hex:" + KEYS[encryption].hex()}
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``python -m tankwatch ARGS`` with its output appended to ``log``."""
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "tankwatch", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
