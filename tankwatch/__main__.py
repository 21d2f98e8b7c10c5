"""Run the CLI with ``python -m tankwatch``."""

from tankwatch_app.cli import app

app()
