"""``tankwatch demo --tiers``: the demo park as a network of tiers, each tier its own process — every enterprise an
instance with its own simulated devices uplinking to a park instance, which uplinks to a county instance. The park
and the county hold the enterprises only through their receivers. Keys are made for the run and handed to the
processes in their environment, as in production."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tankwatch.broker import free_port
from tankwatch.config import Site
from tankwatch.site import CodingRules
from tankwatch_app.runtime import Say, scenario_within
from tiers.coding import SiteCodes

DISTRICT = "320623"  # 如东县, as the demo park
REALTIME_S = 2  # snapshots up every 2 s, for a lively demo (the protocol's default is 10 s)


@dataclass
class Instance:
    """One tier's process: its name, site file, dashboard port and the extra demo arguments."""

    name: str
    site: Path
    port: int
    args: list[str] = field(default_factory=list)


def _dump(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _target(name: str, url: str, encryption: str) -> dict[str, Any]:
    return {"id": name, "url": url, "encryption": encryption, "app_id_env": f"TW_DEMO_{name.upper()}_APP_ID",
            "key_env": f"TW_DEMO_{name.upper()}_KEY", "backoff_max_s": 5, "periods": {"realtime_s": REALTIME_S}}


def _sender(name: str, encryption: str, local: dict[str, str]) -> dict[str, Any]:
    return {"app_id_env": f"TW_DEMO_{name.upper()}_APP_ID", "key_env": f"TW_DEMO_{name.upper()}_KEY",
            "encryption": encryption, "enterprises": list(local), "local_enterprises": local,
            "realtime_s": REALTIME_S}


def tier_sites(site: Site, folder: Path, port: int, scenario: str) -> tuple[list[Instance], dict[str, str]]:
    """Write the site files of every tier into ``folder``; the instances to start and the environment they need."""
    folder.mkdir(parents=True, exist_ok=True)
    full = site.file.model_dump(mode="json", exclude_none=True)
    codes = SiteCodes.build(site, CodingRules(district_code=DISTRICT)).company  # as the park numbers them
    park_receiver, county_receiver = free_port(), free_port()
    common = {k: v for k, v in full.items()
              if k not in ("enterprises", "devices", "users", "storage", "uplink", "receiver")}
    env = _credentials("park")
    enterprises = []
    for i, ent in enumerate(full["enterprises"]):
        name = ent["id"].lower()
        devices = {info.device_id for info in site.sensors if info.enterprise_id == ent["id"]}
        data = {
            **common, "enterprises": [ent], "devices": [d for d in full["devices"] if d["id"] in devices],
            "users": [u for u in full["users"] if u["scope"].get("enterprises") == [ent["id"]] or u["role"] == "admin"],
            "uplink": {"coding": {"district_code": DISTRICT, "codes": {ent["id"]: codes[ent["id"]]}},
                       "targets": [_target(name, f"http://127.0.0.1:{park_receiver}", "sm4")]},
        }
        path = _dump(folder / f"{name}.yaml", data)
        plan = scenario_within(scenario, path, folder / f"{name}-scenario.yaml")
        enterprises.append(Instance(name, path, port + 2 + i, ["--scenario", str(plan), "--modbus-port",
                                                               str(free_port()), "--mqtt-port", str(free_port())]))
        env |= _credentials(name)
    whole = {**common, "enterprises": full["enterprises"], "devices": [], "users": full["users"]}
    park = {
        **whole,
        "receiver": {"http_port": park_receiver, "senders": [
            _sender(e["id"].lower(), "sm4", {codes[e["id"]]: e["id"]}) for e in full["enterprises"]]},
        "uplink": {"coding": {"district_code": DISTRICT}, "targets": [
            _target("park", f"http://127.0.0.1:{county_receiver}", "aes")]},
    }
    county = {**whole, "receiver": {"http_port": county_receiver, "senders": [
        _sender("park", "aes", {code: ent for ent, code in codes.items()})]}}
    return [Instance("park", _dump(folder / "park.yaml", park), port, ["--no-simulate"]),
            Instance("county", _dump(folder / "county.yaml", county), port + 1, ["--no-simulate"]),
            *enterprises], env


def _credentials(name: str) -> dict[str, str]:
    """A fresh appId and 16-byte key (good for SM4 and AES-128) for one link."""
    return {f"TW_DEMO_{name.upper()}_APP_ID": f"demo-{name}",
            f"TW_DEMO_{name.upper()}_KEY": "hex:" + secrets.token_hex(16)}


def run_tiers(site: Site, *, port: int, duration_s: float | None, data_dir: Path, scenario: str, say: Say) -> int:
    """Start every tier, say where each dashboard is, and wait until they end (Ctrl-C stops them all)."""
    instances, env = tier_sites(site, data_dir / "tiers", port, scenario)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for inst in instances:
            cmd = [sys.executable, "-m", "tankwatch", "demo", "--config", str(inst.site), "--port", str(inst.port),
                   "--data-dir", str(data_dir / "tiers" / inst.name), *inst.args]
            if duration_s is not None:
                cmd += ["--duration", str(duration_s)]
            procs.append(subprocess.Popen(cmd, env={**os.environ, **env}))
            say(f"{inst.name}: http://127.0.0.1:{inst.port}/  ({inst.site.name})")
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return max(p.wait() for p in procs)
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
