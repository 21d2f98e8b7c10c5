"""The park simulator: physics driven by a scenario on an injected clock, published over real Modbus and MQTT."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from simulators.modbus_server import ModbusFaultSpec, ModbusSimServer
from simulators.mqtt_publisher import MqttPublisher
from simulators.physics import Esd, TankFarm
from simulators.scenario import (
    Action,
    ClockSkew,
    FailCooling,
    FillTo,
    Freeze,
    ModbusFault,
    MqttFault,
    Ramp,
    Release,
    RestoreCooling,
    Scenario,
    ScenarioError,
    SetBroker,
    SetDevice,
    SetEsd,
    SetFlow,
    check_against_site,
)
from tankwatch.clock import Clock, sleep_until
from tankwatch.config import Site

log = logging.getLogger(__name__)

_ESD_STATES = {"close_esd": Esd.CLOSED, "open_esd": Esd.OPEN, "bypass_esd": Esd.BYPASSED}


class ParkSimulator:
    """Owns the tank-farm physics and the device servers; ``run()`` steps every ``step_s`` of the clock."""

    def __init__(
        self,
        site: Site,
        scenario: Scenario,
        clock: Clock,
        seed: int = 0,
        step_s: float = 1.0,
        modbus_host: str | None = None,
        modbus_port: int | None = None,
        mqtt_host: str | None = None,
        mqtt_port: int | None = None,
    ) -> None:
        if not step_s > 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        if problems := check_against_site(scenario, site):
            raise ScenarioError(f"scenario {scenario.name!r} does not fit site {site.path}: " + "; ".join(problems))
        self.site = site
        self.scenario = scenario
        self.clock = clock
        self.step_s = step_s
        self.farm = TankFarm(
            site,
            seed=seed,
            ambient_c=scenario.ambient_c,
            initial=scenario.initial,
            default_level_frac=scenario.default_level_frac,
        )
        self.modbus = ModbusSimServer(site, modbus_host, modbus_port)
        self.mqtt = MqttPublisher(site, mqtt_host, mqtt_port)
        self.broker_online = True  # scenario state of the MQTT brokers (broker_offline / broker_online)
        # Called with the new broker state; whoever runs the brokers (a live scenario run) stops/starts them.
        self.on_broker: Callable[[bool], None] | None = None
        self.steps = 0  # completed steps
        self._started = False
        self._start_ms: int | None = None  # clock time of scenario time 0, fixed by the first run()
        self._scenario_t = -1.0  # scenario time of the last applied window; -1 so actions at 0 s fire
        self._stepped = asyncio.Condition()

    def values(self) -> dict[str, float]:
        """Current engineering value of every sensor by id."""
        return self.farm.values()

    def advance_to(self, t_s: float) -> None:
        """Move the physics to scenario time ``t_s``, applying each due action at its own time."""
        for at, action in self.scenario.timeline(self._scenario_t, t_s):
            if at > self.farm.t_s:
                self.farm.step(at - self.farm.t_s)
            self.apply(action)
        if t_s > self.farm.t_s:
            self.farm.step(t_s - self.farm.t_s)
        self._scenario_t = max(self._scenario_t, t_s)

    def apply(self, action: Action) -> None:
        """Carry out one scenario action now."""
        farm = self.farm
        match action:
            case SetFlow():
                farm.set_flow(action.tank, action.flow_m3_h)
            case FillTo():
                farm.fill_to(action.tank, action.level_m, action.over_s)
            case Ramp():
                farm.ramp(action.sensor, action.to, action.over_s)
            case Release():
                farm.release(action.sensor)
            case Freeze():
                farm.freeze(action.sensor)
            case FailCooling():
                farm.fail_cooling(action.tank, action.heat_c_per_h)
            case RestoreCooling():
                farm.restore_cooling(action.tank)
            case SetEsd():
                farm.set_esd(action.tank, _ESD_STATES[action.action])
            case SetDevice():
                online = action.action == "device_online"
                if action.device in self.modbus.device_ids:
                    self.modbus.set_online(action.device, online)
                else:
                    self.mqtt.set_online(action.device, online)
            case SetBroker():
                self.broker_online = action.action == "broker_online"
                if self.on_broker is not None:
                    self.on_broker(self.broker_online)
            case ModbusFault():
                only = frozenset(action.sensors) if action.sensors is not None else None
                spec = (
                    None
                    if action.fault == "none"
                    else ModbusFaultSpec(action.fault, action.code, action.delay_s, only)
                )
                self.modbus.set_fault(action.device, spec)
            case MqttFault():
                self.mqtt.set_fault(action.device, None if action.fault == "none" else action.fault)
            case ClockSkew():
                self.mqtt.set_skew(action.device, action.skew_s)
        log.info("scenario %s: %s", self.scenario.name, action.model_dump(exclude_none=True))

    async def publish(self) -> None:
        """Push the current values to the Modbus registers and the MQTT broker."""
        values = self.farm.values()
        await self.modbus.write(values)
        self.mqtt.publish(values, self.clock.now_ms())

    @property
    def start_ms(self) -> int | None:
        """Clock time of scenario time 0 (None until ``run()`` begins)."""
        return self._start_ms

    @property
    def started(self) -> bool:
        """Whether the servers are up."""
        return self._started

    async def start(self, mqtt_connect_timeout_s: float = 3.0) -> None:
        """Start the Modbus servers and the MQTT client (once; later calls do nothing).

        Waits up to ``mqtt_connect_timeout_s`` for the brokers so the first values are not lost; a broker that
        is not there yet is only logged, since the client keeps reconnecting.
        """
        if self._started:
            return
        await self.modbus.start()
        self.mqtt.start()
        self._started = True
        if not await self.mqtt.wait_connected(mqtt_connect_timeout_s):
            log.warning("simulator: MQTT broker not connected yet; publishing starts when it is")

    async def stop(self) -> None:
        """Stop the servers and the MQTT client (idempotent)."""
        if not self._started:
            return
        self._started = False
        await asyncio.to_thread(self.mqtt.stop)  # it waits briefly for queued messages to go out
        await self.modbus.stop()

    async def run(self) -> None:
        """Step, publish and wait for the next step until cancelled.

        Starts the servers unless the caller already did; stops them on the way out only if it started them.
        """
        owns_servers = not self._started
        try:
            await self.start()
            if self._start_ms is None:
                self._start_ms = self.clock.now_ms()
            step_ms = self.step_s * 1000.0
            while True:
                elapsed_ms = self.clock.now_ms() - self._start_ms
                self.advance_to(elapsed_ms / 1000.0)
                await self.publish()
                async with self._stepped:
                    self.steps += 1
                    self._stepped.notify_all()
                # Wake at the next step boundary: no drift after a slow step, no burst of catch-up steps after a
                # stall (the physics integrates the whole gap in one step instead).
                next_ms = self._start_ms + (elapsed_ms // step_ms + 1) * step_ms
                await sleep_until(self.clock, round(next_ms))
        finally:
            if owns_servers:
                await self.stop()

    async def wait_for_step(self, n: int) -> None:
        """Wait until ``n`` steps have completed (for callers that drive a ManualClock)."""
        async with self._stepped:
            await self._stepped.wait_for(lambda: self.steps >= n)
