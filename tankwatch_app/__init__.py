"""The composition root: processes (runtime, supervisor), replay and scenario runs, and every command of the CLI."""
