"""A private Mosquitto for the peer benchmark: nothing dropped, no in-flight cap, 127.0.0.1 on a free port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mosquitto_binary() -> str:
    """Path of mosquitto; RuntimeError saying how to install it when it is missing."""
    found = shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin")
    if found is None:
        raise RuntimeError("mosquitto is not installed: run deploy/scripts/test-services.sh (or apt-get install "
                           "mosquitto)")
    return found



def stop_process(process: subprocess.Popen | None, grace_s: float) -> None:
    """Terminate a child process, killing it when it has not exited within ``grace_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)

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
        stop_process(process, grace_s=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BenchBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
