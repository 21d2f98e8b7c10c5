"""A private Mosquitto for the peer benchmark: nothing dropped, no in-flight cap, 127.0.0.1 on a free port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bench.services import free_port, mosquitto_binary, stop_process

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


class BenchBroker:
    """A Mosquitto process of our own; use as a context manager, or ``start()``/``stop()``."""

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="tankwatch-bench-mosquitto-"))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> BenchBroker:
        """Start and wait until the port accepts connections."""
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(CONFIG.format(port=self.port))
        log = (self.workdir / "mosquitto.log").open("ab")
        self._process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"mosquitto exited with {code}: {tail}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout_s} s: {tail}")

    def log_tail(self) -> str:
        """The end of the broker's log."""
        try:
            return (self.workdir / "mosquitto.log").read_text(errors="replace")[-600:].strip()
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Terminate the broker and remove its files."""
        process, self._process = self._process, None
        stop_process(process, 5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BenchBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
