"""``tankwatch demo --distributed``: the demo park in the distributed mode on one machine, without compose — a tansu
broker, the simulated devices, and each stage its own ``tankwatch run`` process (ingest, two alarm workers, the
historian, the dashboard) on private ports, with the demo users.

This process is the service manager a deployment has in systemd or compose: a stage that exits with status 2 (it
lost the bus and asks to be restarted) is started again; the broker is restarted whenever it exits (tansu keeps
topics in memory, so that is a broker that lost its data). A stage that exits otherwise — stopped, or killed by
hand — stays down, so that a test can see what the others do without it. ``<data_dir>/distributed.json`` (the
manifest) says where everything is: ports, pids, logs, each stage's command line; it is rewritten on every change.

The stages read a copy of the site file whose stream topics have tansu's own partition count
(``tansu.AUTO_CREATED_PARTITIONS``): after a broker restart the first client to ask for a topic creates it, and the
alarm workers refuse topics whose partition counts differ from the configured one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tankwatch.broker import free_port
from tankwatch.clock import SystemClock
from tankwatch.config import Site
from tankwatch_app.endpoints import override_endpoints
from tankwatch_app.runtime import Say, migrated_sql_url, simulated_devices
from tankwatch_app.tansu import AUTO_CREATED_PARTITIONS, start_tansu

MANIFEST = "distributed.json"
RESTART_CODE = 2  # `tankwatch run` exits with it when the stage should be started again (StageError)
RESTART_PAUSE_S = 1.0
STOP_WAIT_S = 12.0  # a stage's own stop deadline is 9 s (runtime.STOP_DEADLINE_S)
WORKER_SESSION_TIMEOUT_S = 4.0  # a killed worker's partitions move within ~6 s (deploy/README.md, failover)
ALARM_WORKERS = 2


@dataclass
class Stage:
    """One stage process: what runs it, and what became of it."""

    name: str
    argv: list[str]
    log: Path
    metrics_port: int
    port: int | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = -1  # the first start is not a restart
    exit_code: int | None = None

    async def start(self, env: dict[str, str]) -> None:
        """Start (again) with the output appended to the stage's log."""
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, env=env)
        self.restarts += 1
        self.exit_code = None

    def describe(self) -> dict[str, Any]:
        """The stage's manifest entry."""
        alive = self.process is not None and self.process.returncode is None
        return {"pid": self.process.pid if alive and self.process else None, "metrics_port": self.metrics_port,
                "port": self.port, "restarts": self.restarts, "exit_code": self.exit_code, "log": str(self.log),
                "argv": self.argv}


@dataclass
class DistributedDemo:
    """The broker, the simulators and the stage processes of one distributed demo."""

    site: Site
    folder: Path
    port: int
    scenario: str
    say: Say
    modbus_port: int
    mqtt_port: int
    broker_port: int = field(default_factory=free_port)
    stages: list[Stage] = field(default_factory=list)
    broker: asyncio.subprocess.Process | None = None
    broker_restarts: int = -1

    @property
    def bus_url(self) -> str:
        """The private broker's URL."""
        return f"kafka://127.0.0.1:{self.broker_port}"

    @property
    def data_dir(self) -> Path:
        """The stages' shared data folder (SQLite events and users, the embedded time-series file)."""
        return self.folder / "stages"

    @property
    def site_file(self) -> Path:
        """The stages' copy of the site file."""
        return self.folder / "site.yaml"

    def write_site_file(self) -> None:
        """The site file with the stream topics' partition count tansu gives a topic it creates by itself."""
        data = self.site.file.model_dump(mode="json", exclude_none=True)
        data.setdefault("bus", {})["partitions"] = AUTO_CREATED_PARTITIONS
        self.site_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    def plan(self) -> list[Stage]:
        """The stage processes: ingest, the alarm workers, the historian, the dashboard."""
        common = ["--config", str(self.site_file), "--bus", self.bus_url, "--data-dir", str(self.data_dir),
                  "--modbus-port", str(self.modbus_port), "--mqtt-port", str(self.mqtt_port), "--demo"]
        names = ["ingest", *(f"alarms-{i + 1}" for i in range(ALARM_WORKERS)), "historian", "dashboard"]
        stages = []
        for name in names:
            metrics_port = free_port()
            argv = [sys.executable, "-m", "tankwatch_app.stages_cli", "run", name.split("-")[0], *common,
                    "--metrics-port", str(metrics_port)]
            port = None
            if name == "dashboard":
                port = self.port
                argv += ["--port", str(port)]
            if name.startswith("alarms"):
                argv += ["--session-timeout", str(WORKER_SESSION_TIMEOUT_S)]
            stages.append(Stage(name, argv, self.folder / "logs" / f"{name}.log", metrics_port, port))
        return stages

    def write_manifest(self) -> None:
        """Write ``distributed.json`` (atomically: readers never see half of it)."""
        alive = self.broker is not None and self.broker.returncode is None
        data = {
            "bus": self.bus_url, "config": str(self.site_file), "data_dir": str(self.data_dir),
            "modbus_port": self.modbus_port, "mqtt_port": self.mqtt_port,
            "dashboard": f"http://127.0.0.1:{self.port}/",
            "broker": {"port": self.broker_port, "pid": self.broker.pid if alive and self.broker else None,
                       "restarts": self.broker_restarts, "log": str(self.folder / "logs" / "tansu.log")},
            "stages": {s.name: s.describe() for s in self.stages},
        }
        tmp = self.folder / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, self.folder / MANIFEST)

    async def start_broker(self) -> None:
        """Start tansu on the demo's broker port."""
        self.broker = await start_tansu("127.0.0.1", self.broker_port, self.folder / "logs" / "tansu.log")
        self.broker_restarts += 1

    async def run(self, duration_s: float | None) -> None:
        """Start everything, supervise until ``duration_s`` has passed (or cancelled), then stop everything."""
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.write_site_file()
        await migrated_sql_url(self.site, self.data_dir)  # once, before stages that share the SQLite file start
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("TANKWATCH_SECRET_KEY", secrets.token_urlsafe(48))  # one sign-in for every dashboard
        await self.start_broker()
        self.say(f"broker: tansu on 127.0.0.1:{self.broker_port}")
        devices = override_endpoints(self.site, modbus_port=self.modbus_port, mqtt_port=self.mqtt_port)
        try:
            async with simulated_devices(devices, self.scenario, SystemClock(), self.say) as simulator:
                simulating = asyncio.create_task(simulator.run())
                self.say(f"devices: Modbus on 127.0.0.1:{self.modbus_port}, MQTT on 127.0.0.1:{self.mqtt_port}")
                try:
                    self.stages = self.plan()
                    for stage in self.stages:
                        await stage.start(env)
                        self.say(f"{stage.name}: pid {stage.process.pid if stage.process else '?'}, metrics "
                                 f"http://127.0.0.1:{stage.metrics_port}/metrics, log {stage.log}")
                    self.write_manifest()
                    self.say(f"tankwatch dashboard: http://127.0.0.1:{self.port}/  (manifest "
                             f"{self.folder / MANIFEST}; Ctrl-C to stop)")
                    supervising = asyncio.create_task(self.supervise(env))
                    try:
                        await asyncio.wait_for(asyncio.shield(supervising), duration_s)
                    except TimeoutError:
                        pass
                    finally:
                        supervising.cancel()
                        await asyncio.gather(supervising, return_exceptions=True)
                finally:
                    await self.stop_stages()
                    simulating.cancel()
                    await asyncio.gather(simulating, return_exceptions=True)
        finally:
            await stop(self.broker)
            self.write_manifest()

    async def supervise(self, env: dict[str, str]) -> None:
        """Restart the broker whenever it exits and a stage that exits with RESTART_CODE; note other exits."""
        while True:
            await asyncio.sleep(0.2)
            changed = False
            if self.broker is not None and self.broker.returncode is not None:
                self.say(f"broker exited ({self.broker.returncode}); starting it again (its topics are gone)")
                await self.start_broker()
                changed = True
            for stage in self.stages:
                process = stage.process
                if process is None or process.returncode is None or stage.exit_code is not None:
                    continue
                stage.exit_code = process.returncode
                changed = True
                if process.returncode == RESTART_CODE:
                    self.say(f"{stage.name} exited asking to be restarted; restarting it")
                    await asyncio.sleep(RESTART_PAUSE_S)
                    await stage.start(env)
                else:
                    self.say(f"{stage.name} exited ({process.returncode}); left down")
            if changed:
                self.write_manifest()

    async def stop_stages(self) -> None:
        """SIGTERM every stage, then SIGKILL those still there after STOP_WAIT_S."""
        await asyncio.gather(*(stop(s.process) for s in self.stages))
        for stage in self.stages:
            if stage.process is not None and stage.exit_code is None:
                stage.exit_code = stage.process.returncode


async def stop(process: asyncio.subprocess.Process | None) -> None:
    """SIGTERM a process (a stopped one is continued first), SIGKILL it after STOP_WAIT_S."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)  # a broker a test froze must be able to take the SIGTERM
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_WAIT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def run_distributed(site: Site, *, port: int, duration_s: float | None, data_dir: Path, scenario: str,
                          say: Say, modbus_port: int | None = None, mqtt_port: int | None = None) -> None:
    """The distributed demo in ``<data_dir>/distributed`` until ``duration_s`` has passed or it is cancelled."""
    demo = DistributedDemo(site, data_dir / "distributed", port, scenario, say, modbus_port or free_port(),
                           mqtt_port or free_port())
    await demo.run(duration_s)
