"""Run the CLI with ``python -m tankwatch``."""

from tankwatch.cli import app

app()
