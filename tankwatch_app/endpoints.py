"""Where a site's devices and brokers are: its MQTT brokers, and the site with them moved to other ports (the
demo, scenario runs and tests)."""

from __future__ import annotations

from tankwatch.config import Site, rebuild_site


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
