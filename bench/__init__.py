"""Reproducible benchmarks, each measured against its baseline in one run."""
