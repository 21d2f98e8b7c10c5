"""Modbus TCP polling adapter."""
