"""Services the tests run against on 127.0.0.1: Mosquitto, reused on 1883 when it answers, else started here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

DEFAULT_MQTT = ("127.0.0.1", 1883)
INSTALL_HINT = "run deploy/scripts/test-services.sh (make test does) to install it"

_DISCONNECT = bytes([0xE0, 0])


def _connect_packet() -> bytes:
    """MQTT 3.1.1 CONNECT: clean session, keepalive 10 s, a unique client id so probes never kick each other."""
    client_id = f"tw-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}".encode()
    body = b"\x00\x04MQTT" + bytes([4, 0x02, 0, 10]) + len(client_id).to_bytes(2, "big") + client_id
    return bytes([0x10, len(body)]) + body


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mqtt_accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether an MQTT broker at host:port accepts an anonymous 3.1.1 connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_connect_packet())
            ack = b""
            while len(ack) < 4:
                chunk = sock.recv(4 - len(ack))
                if not chunk:
                    return False
                ack += chunk
            sock.sendall(_DISCONNECT)
            return ack[0] == 0x20 and ack[3] == 0
    except OSError:
        return False


def mosquitto_binary() -> str:
    """Path of the mosquitto binary; RuntimeError naming the install script when it is missing."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which("mosquitto", path=search)
    if found is None:
        raise RuntimeError(f"the mosquitto binary is not installed: {INSTALL_HINT}")
    return found


class MosquittoHandle:
    """A private Mosquitto on 127.0.0.1:port that a test can stop and start again on the same port."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to connect to."""
        return self.host, self.port

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> MosquittoHandle:
        """Start the broker and wait until it accepts MQTT connections."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "max_queued_messages 100000\n"
            "persistence false\n"
            "log_dest stderr\n"
        )
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                message = f"mosquitto exited with {self._process.returncode}: {self._log_tail()}"
                self.stop()
                raise RuntimeError(message)
            if mqtt_accepts(self.host, self.port, timeout=0.5):
                return self
            time.sleep(0.05)
        message = f"mosquitto did not accept connections on port {self.port}: {self._log_tail()}"
        self.stop()
        raise RuntimeError(message)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s) and remove its files; ``start()`` may follow."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _log_tail(self) -> str:
        """The end of the broker's log, for error messages."""
        try:
            return self.log.read_text(errors="replace")[-600:].strip()
        except OSError:
            return "(no log)"


def start_mosquitto(port: int | None = None) -> MosquittoHandle:
    """Start a private Mosquitto on 127.0.0.1 (a free port unless given); the caller must ``.stop()`` it."""
    mosquitto_binary()
    workdir = Path(tempfile.mkdtemp(prefix="tankwatch-mosquitto-"))
    return MosquittoHandle(port or free_port(), workdir).start()
