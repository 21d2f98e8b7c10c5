"""Tank-farm simulators that speak real Modbus TCP and MQTT."""
