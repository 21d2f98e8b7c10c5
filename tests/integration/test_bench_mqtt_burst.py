"""`tankwatch bench mqtt-burst` on a small burst: with the deployment's broker settings every message reaches the
alarm core; with Mosquitto's defaults what does not arrive is what the broker's drop counter reports."""

from __future__ import annotations

from bench.mqtt_burst import run_mqtt_burst


def test_a_burst_arrives_whole_as_deployed_and_the_defaults_losses_are_counted() -> None:
    defaults, deployed = run_mqtt_burst(detectors=2_000, messages=6_000, rate=None, timeout_s=120, log=lambda _m: None)
    assert (defaults.broker, deployed.broker) == ("defaults", "deployed")
    assert deployed.received == deployed.sent == 6_000 and deployed.broker_dropped == 0
    assert defaults.sent == 6_000 and defaults.lost == defaults.broker_dropped
