"""Node-RED 4 as the peer: installed with npm into a scratch folder, run on 127.0.0.1 with our settings and flow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.services import free_port, stop_process

HARNESS = Path(__file__).resolve().parent / "node-red"  # package.json, settings.js, flows.json (committed)
MIN_NODE_MAJOR = 18  # Node-RED 4 needs Node >= 18; Node-RED 5 would need >= 22.9


def cache_dir(env: str, name: str) -> Path:
    """Where a peer is installed: $``env``, else ~/.cache/tankwatch/``name`` (never the repo)."""
    given = os.environ.get(env)
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tankwatch" / name


def install_dir() -> Path:
    """Where Node-RED is installed: $TANKWATCH_NODE_RED_DIR, else ~/.cache/tankwatch/node-red."""
    return cache_dir("TANKWATCH_NODE_RED_DIR", "node-red")


def pinned_version() -> str:
    """The Node-RED version our package.json pins."""
    return json.loads((HARNESS / "package.json").read_text())["dependencies"]["node-red"]


def node_binary() -> str:
    """Path of node, checked to be new enough; RuntimeError naming what is missing."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(f"node is not installed: Node-RED {pinned_version()} needs Node.js >= {MIN_NODE_MAJOR}")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < MIN_NODE_MAJOR:
        raise RuntimeError(f"node {version} is too old: Node-RED {pinned_version()} needs Node.js >= {MIN_NODE_MAJOR}")
    return node


def installed_version(where: Path) -> str | None:
    """Version of the Node-RED installed under ``where``, None when there is none."""
    try:
        return json.loads((where / "node_modules" / "node-red" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(where: Path | None = None, log=print) -> Path:
    """Install the pinned Node-RED with npm into ``where`` unless it is there already; returns red.js."""
    where = where or install_dir()
    node_binary()
    want = pinned_version()
    if installed_version(where) != want:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed: it is needed to install Node-RED for the benchmark")
        where.mkdir(parents=True, exist_ok=True)
        shutil.copy(HARNESS / "package.json", where / "package.json")
        log(f"installing Node-RED {want} into {where} (npm) …")
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--loglevel=error"],
                              cwd=where, capture_output=True, text=True)
        if done.returncode != 0 or installed_version(where) != want:
            raise RuntimeError(f"npm install of Node-RED {want} in {where} failed: "
                               f"{(done.stderr or done.stdout).strip()[-800:]}")
    return where / "node_modules" / "node-red" / "red.js"


@dataclass(frozen=True)
class Counts:
    """What the flow's evaluate node has seen: points, messages, limit transitions, sensors, last point time."""

    points: int
    messages: int
    transitions: int
    sensors: int
    last_ms: int


class NodeRed:
    """A Node-RED process running our flow against an MQTT broker; a context manager."""

    def __init__(self, red_js: Path, mqtt_host: str, mqtt_port: int, topic: str, port: int | None = None) -> None:
        self.red_js = red_js
        self.port = port or free_port()
        self.mqtt = (mqtt_host, mqtt_port, topic)
        self.user_dir = Path(tempfile.mkdtemp(prefix="tankwatch-bench-node-red-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the flow's HTTP endpoints."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> NodeRed:
        """Start Node-RED with a fresh copy of the flow and wait until GET /counts answers."""
        flows = self.user_dir / "flows.json"
        shutil.copy(HARNESS / "flows.json", flows)  # Node-RED may write next to its flow file: keep the repo clean
        host, mqtt_port, topic = self.mqtt
        env = {
            **os.environ,
            "TW_NODE_RED_PORT": str(self.port),
            "TW_NODE_RED_USER_DIR": str(self.user_dir),
            "TW_NODE_RED_FLOWS": str(flows),
            "TW_MQTT_HOST": host,
            "TW_MQTT_PORT": str(mqtt_port),
            "TW_MQTT_TOPIC": topic,
            "NODE_ENV": "production",
        }
        log = (self.user_dir / "node-red.log").open("ab")
        self._process = subprocess.Popen(
            [node_binary(), str(self.red_js), "--settings", str(HARNESS / "settings.js"), "--userDir",
             str(self.user_dir), str(flows)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"Node-RED exited with {code}: {tail}")
            try:
                self.counts()
                return self
            except (OSError, ValueError):
                time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"Node-RED did not answer on {self.url}/counts within {timeout_s} s: {tail}")

    def counts(self) -> Counts:
        """GET /counts from the flow."""
        with urllib.request.urlopen(f"{self.url}/counts", timeout=5) as response:
            doc = json.loads(response.read())
        return Counts(int(doc["points"]), int(doc["messages"]), int(doc["transitions"]), int(doc["sensors"]),
                      int(doc["last_ms"]))

    def log_tail(self) -> str:
        """The end of Node-RED's console log."""
        try:
            return (self.user_dir / "node-red.log").read_text(errors="replace")[-800:].strip()
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop Node-RED and remove its scratch folder."""
        process, self._process = self._process, None
        stop_process(process, 10)
        shutil.rmtree(self.user_dir, ignore_errors=True)

    def __enter__(self) -> NodeRed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["Counts", "NodeRed", "ensure_installed", "install_dir", "installed_version"]
