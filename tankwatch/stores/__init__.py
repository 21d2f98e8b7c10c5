"""Stores: embedded time series and SQL events."""
