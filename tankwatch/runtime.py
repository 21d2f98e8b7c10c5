"""Compose a whole process: stores, alarm core, adapters, dashboard and (for the demo) simulators and broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import uvicorn

from alarms.evaluate import AlarmCore
from dashboard.app import create_app
from dashboard.live import LiveHub
from ingest.modbus.adapter import ModbusSource
from ingest.mqtt.adapter import MqttSource
from simulators.park import ParkSimulator
from simulators.scenario import load_scenario
from tankwatch.broker import broker_answers, embedded_broker
from tankwatch.bus import MemoryBus
from tankwatch.clock import Clock, SystemClock
from tankwatch.config import Site, rebuild_site
from tankwatch.stores.events import EventStore, sqlite_url
from tankwatch.stores.timeseries import TimeSeriesStore
from tankwatch.supervisor import Pipeline

log = logging.getLogger(__name__)

Say = Callable[[str], None]


def override_endpoints(site: Site, modbus_port: int | None = None, mqtt_port: int | None = None) -> Site:
    """The site with every Modbus device and MQTT broker moved to the given ports (demo and tests)."""
    if modbus_port is None and mqtt_port is None:
        return site
    data = site.file.model_dump(mode="json", exclude_none=True)
    for device in data["devices"]:
        if "modbus" in device and modbus_port is not None:
            device["modbus"]["port"] = modbus_port
        if "mqtt" in device and mqtt_port is not None:
            device["mqtt"]["broker"]["port"] = mqtt_port
    return rebuild_site(data, site.path)


def mqtt_endpoints(site: Site) -> set[tuple[str, int]]:
    """Distinct (host, port) of the MQTT brokers the site's devices publish to."""
    return {(d.mqtt.broker.host, d.mqtt.broker.port) for d in site.devices if d.mqtt is not None}


@contextlib.asynccontextmanager
async def brokers_for(site: Site, say: Say) -> AsyncIterator[None]:
    """Use each configured broker that answers; start an embedded one where none does."""
    async with contextlib.AsyncExitStack() as stack:
        for host, port in sorted(mqtt_endpoints(site)):
            if await broker_answers(host, port):
                say(f"MQTT: using the broker at {host}:{port}")
            else:
                await stack.enter_async_context(embedded_broker(host, port))
                say(f"MQTT: started an embedded broker at {host}:{port}")
        yield


def data_dir_for(site: Site, data_dir: Path | None) -> Path:
    """The folder stores write to."""
    return Path(data_dir) if data_dir is not None else Path(site.file.storage.data_dir)


async def serve(
    site: Site,
    *,
    port: int,
    data_dir: Path,
    clock: Clock,
    duration_s: float | None,
    say: Say,
    extra_tasks: tuple = (),
) -> None:
    """Run ingest → alarms → stores → dashboard until cancelled or ``duration_s`` has passed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sensor_ids = [s.sensor.id for s in site.sensors]
    timeseries = TimeSeriesStore(data_dir / "timeseries.db", sensor_ids, site.file.storage.retention_days)
    events = EventStore(site.file.storage.sql_url or sqlite_url(data_dir))
    bus = MemoryBus()
    hub = LiveHub(bus, site)
    pipeline = Pipeline(
        site=site,
        clock=clock,
        bus=bus,
        sources=[ModbusSource(site, clock), MqttSource(site, clock)],
        alarm_core=AlarmCore(site),
        timeseries=timeseries,
        events=events,
        extra_tasks=(hub.run, *extra_tasks),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(site, timeseries, events, hub, clock=clock, run_hub=False),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    pipeline.start()
    web = asyncio.create_task(server.serve())
    say(f"tankwatch dashboard: http://127.0.0.1:{port}/  (Ctrl-C to stop)")
    try:
        watched = [web, asyncio.create_task(pipeline.wait())]
        if duration_s is not None:
            watched.append(asyncio.create_task(asyncio.sleep(duration_s)))
        done, pending = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            if task is not web:
                task.cancel()
        for task in done:
            if task is not web and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        server.should_exit = True
        await pipeline.stop()
        await asyncio.gather(web, return_exceptions=True)
        events.close()
        timeseries.close()


async def run_demo(
    site: Site, *, port: int, duration_s: float | None, data_dir: Path | None, scenario: str, say: Say
) -> None:
    """The demo: a simulated park (Modbus server + MQTT publishers) feeding the full pipeline."""
    clock = SystemClock()
    plan = load_scenario(scenario)
    async with brokers_for(site, say):
        simulator = ParkSimulator(site, plan, clock)
        await simulator.start()
        say(f"simulator: scenario {plan.name!r}, {len(site.sensors)} sensors on Modbus TCP and MQTT")
        try:
            await serve(
                site,
                port=port,
                data_dir=data_dir_for(site, data_dir) / "demo",
                clock=clock,
                duration_s=duration_s,
                say=say,
                extra_tasks=(simulator.run,),
            )
        finally:
            await simulator.stop()


async def run_live(site: Site, *, port: int, duration_s: float | None, data_dir: Path | None, say: Say) -> None:
    """Production: read the site's real devices."""
    data = data_dir_for(site, data_dir)
    await serve(site, port=port, data_dir=data, clock=SystemClock(), duration_s=duration_s, say=say)
