"""MQTT subscribing adapter."""
