"""The ingest sources' child processes (MQTT and Kafka decode processes): waiting for one to exit."""

from __future__ import annotations

import multiprocessing.process

STOP_WAIT_S = 5.0


def join_or_terminate(process: multiprocessing.process.BaseProcess) -> None:
    """Wait for a child asked to stop; terminate it when it has not exited after STOP_WAIT_S."""
    process.join(timeout=STOP_WAIT_S)
    if process.is_alive():
        process.terminate()
        process.join(timeout=STOP_WAIT_S)
