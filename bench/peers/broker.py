"""A private Mosquitto for the peer benchmark: nothing dropped, no in-flight cap, 127.0.0.1 on a free port."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.services import ServerHandle, free_port, mosquitto_binary

# Same broker settings as bench/services.py's test broker, except that the queue and the in-flight window
# are unlimited (0): the feed publishes far faster than a subscriber drains it, and a dropped QoS 1 message
# would make the point counts disagree.
CONFIG = """listener {port} 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 0
persistence false
log_dest stderr
"""


class BenchBroker(ServerHandle):
    """A Mosquitto process of our own on a free port, in a scratch folder; a context manager."""

    name = "mosquitto"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port or free_port(), Path(tempfile.mkdtemp(prefix="tankwatch-bench-mosquitto-")))

    def command(self) -> list[str]:
        """Write the configuration and return the command line."""
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(CONFIG.format(port=self.port))
        return [mosquitto_binary(), "-c", str(conf)]

    def __enter__(self) -> BenchBroker:
        self.start(timeout=15.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
