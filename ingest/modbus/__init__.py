"""Modbus TCP polling adapter."""

from ingest.modbus.adapter import Backoff, ModbusSource
from ingest.modbus.plan import DevicePlan, ReadBlock, plan_device, plan_site

__all__ = ["Backoff", "DevicePlan", "ModbusSource", "ReadBlock", "plan_device", "plan_site"]
