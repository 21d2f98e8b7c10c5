"""Servers the tests and benchmarks run against on 127.0.0.1: Mosquitto (reused on 1883 when it answers, else
started here), tansu, VictoriaMetrics and PostgreSQL databases."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from tankwatch.broker import free_port
from tankwatch_app.tansu import tansu_command

DEFAULT_MQTT = ("127.0.0.1", 1883)
INSTALL_HINT = "run deploy/scripts/test-services.sh (make test does) to install it"

_DISCONNECT = bytes([0xE0, 0])


def _connect_packet() -> bytes:
    """MQTT 3.1.1 CONNECT: clean session, keepalive 10 s, a unique client id so probes never kick each other."""
    client_id = f"tw-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}".encode()
    body = b"\x00\x04MQTT" + bytes([4, 0x02, 0, 10]) + len(client_id).to_bytes(2, "big") + client_id
    return bytes([0x10, len(body)]) + body


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

    def __init__(self, port: int, workdir: Path, settings: str = "") -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.workdir = workdir
        self.settings = settings  # more mosquitto.conf lines, e.g. "max_queued_messages 10\n"
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
            "log_dest stderr\n" + self.settings
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


DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "mosquitto.conf"


def deployed_settings(names: Sequence[str], path: Path = DEPLOY_CONF) -> str:
    """The lines of the deployment's mosquitto.conf that set these options (what a bench runs "as deployed")."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    picked = [line for line in lines if line.split(" ", 1)[0] in names]
    if not picked:
        raise RuntimeError(f"{path} sets none of {', '.join(names)}")
    return "".join(f"{line}\n" for line in picked)


def start_mosquitto(port: int | None = None, settings: str = "") -> MosquittoHandle:
    """Start a private Mosquitto on 127.0.0.1 (a free port unless given) with ``settings`` (mosquitto.conf lines)
    after the test defaults; the caller must ``.stop()`` it."""
    mosquitto_binary()
    workdir = Path(tempfile.mkdtemp(prefix="tankwatch-mosquitto-"))
    return MosquittoHandle(port or free_port(), workdir, settings).start()


# ---------------------------------------------------------------------------------------------------------------
# Kafka protocol (tansu), InfluxDB write path (VictoriaMetrics), PostgreSQL


def wait_listening(host: str, port: int, process: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    """Wait until ``process`` accepts TCP connections on host:port; RuntimeError if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s")


def stop_process(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class ServerHandle:
    """A server process on 127.0.0.1:port with a work folder; ``stop()`` then ``start()`` keeps port and folder."""

    name = "server"

    def __init__(self, port: int, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.workdir = workdir
        self.log = workdir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._process.pid if self.running else None  # type: ignore[union-attr]

    def start(self, timeout: float = 30.0) -> ServerHandle:
        """Start the server and wait until its port accepts connections."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir
            )
        try:
            wait_listening(self.host, self.port, self._process, self.name, timeout)
        except RuntimeError as exc:
            tail = self.log.read_text(errors="replace")[-600:].strip()
            stop_process(self._process)
            self._process = None
            raise RuntimeError(f"{exc}: {tail}") from None
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); files stay until ``cleanup()``."""
        process, self._process = self._process, None
        stop_process(process)

    def cleanup(self) -> None:
        """Stop and remove the work folder."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class TansuHandle(ServerHandle):
    """The tansu broker (memory storage: a restart loses every topic)."""

    name = "tansu"

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` as the CLI takes it."""
        return f"kafka://{self.bootstrap}"

    def command(self) -> list[str]:
        """Listen and advertise on 127.0.0.1 only."""
        return tansu_command(self.host, self.port)


def start_tansu(port: int | None = None) -> TansuHandle:
    """Start a private tansu broker on 127.0.0.1 (a free port unless given); the caller must ``cleanup()`` it."""
    workdir = Path(tempfile.mkdtemp(prefix="tankwatch-tansu-"))
    return TansuHandle(port or free_port(), workdir).start()  # type: ignore[return-value]


METRICS_REUSE_S = 1.1
"""VictoriaMetrics recomputes its storage figures on /metrics at most once a second (plus a margin)."""


def victoria_metrics_binary() -> str:
    """Path of Debian's victoria-metrics binary; RuntimeError naming the install script when it is missing."""
    found = shutil.which("victoria-metrics")
    if found is None:
        raise RuntimeError(f"the victoria-metrics binary is not installed: {INSTALL_HINT}")
    return found


class VictoriaMetricsHandle(ServerHandle):
    """VictoriaMetrics: InfluxDB line protocol on /api/v2/write, read back through /api/v1/export."""

    name = "victoria-metrics"

    def __init__(self, port: int, workdir: Path) -> None:
        super().__init__(port, workdir)
        self._rows_at_start = 0.0  # rows the storage held when this process started (inserts count from there)

    @property
    def url(self) -> str:
        """Base URL for the InfluxDB client."""
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """Points become searchable at once (no 30 s latency offset); no self-scraping."""
        return [
            victoria_metrics_binary(), f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}", "-retentionPeriod=100y", "-search.latencyOffset=0s",
            "-selfScrapeInterval=0", "-loggerLevel=ERROR",
        ]

    def start(self, timeout: float = 30.0) -> VictoriaMetricsHandle:
        """Start the server and note how many rows its storage already holds (what :meth:`flush` counts from)."""
        if self.running:
            return self
        super().start(timeout)
        self._rows_at_start = self._searchable_rows(self._metrics())
        return self

    def export(self, match: str) -> list[dict]:
        """Every series matching a selector, e.g. ``{__name__="readings_value"}``: metric labels, values, ts."""
        import json
        import urllib.parse
        import urllib.request

        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30) as response:
            return [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]

    def flush(self, timeout: float = 60.0) -> None:
        """Make every point accepted so far searchable; RuntimeError if some are still not after ``timeout``.

        ``/internal/force_flush`` alone is not enough: it turns only the raw rows still waiting in memory into
        parts, while rows that VictoriaMetrics' own once-a-second flusher has already taken stay invisible until
        that flusher has sorted them into a part (a few hundred thousand rows after a burst: up to seconds on a
        busy machine). So this also waits until the server's figures count every row inserted since start as
        searchable, reading only figures computed after the flush (``/metrics`` reuses them for up to 1 s).
        """
        import urllib.request

        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=30).read()
        fresh_from = time.monotonic() + METRICS_REUSE_S
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(max(0.1, fresh_from - time.monotonic()))
            metrics = self._metrics()
            ignored = sum(v for k, v in metrics.items() if k.startswith("vm_rows_ignored_total{"))
            inserted = sum(v for k, v in metrics.items() if k.startswith("vm_rows_inserted_total{"))
            missing = self._rows_at_start + inserted - ignored - self._searchable_rows(metrics)
            if missing <= 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"victoria-metrics: {missing:.0f} accepted rows not searchable after {timeout} s")

    @staticmethod
    def _searchable_rows(metrics: dict[str, float]) -> float:
        """Rows in the storage's parts (``vm_rows`` counts the raw rows not yet in a part too)."""
        rows = metrics['vm_rows{type="storage/small"}'] + metrics['vm_rows{type="storage/big"}']
        return rows - metrics['vm_pending_rows{type="storage"}']

    def _metrics(self) -> dict[str, float]:
        """The server's own /metrics as ``name{labels}`` → value."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=30) as response:
            lines = response.read().decode().splitlines()
        return {key: float(value) for key, _, value in (line.rpartition(" ") for line in lines if line[:1] != "#")
                if key}


def start_victoria_metrics(port: int | None = None) -> VictoriaMetricsHandle:
    """Start a private VictoriaMetrics on 127.0.0.1; the caller must ``cleanup()`` it."""
    victoria_metrics_binary()
    workdir = Path(tempfile.mkdtemp(prefix="tankwatch-vm-"))
    return VictoriaMetricsHandle(port or free_port(), workdir).start()  # type: ignore[return-value]


POSTGRES_URL = os.environ.get("TANKWATCH_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def postgres_answers(url: str = POSTGRES_URL) -> bool:
    """Whether the PostgreSQL server of ``url`` accepts a connection."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False
    finally:
        engine.dispose()


class PostgresDatabase:
    """A uniquely named database on the local PostgreSQL, created now and dropped by ``drop()``."""

    def __init__(self, admin_url: str = POSTGRES_URL) -> None:
        from sqlalchemy.engine import make_url

        self.admin_url = admin_url
        self.name = f"tankwatch_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.url = make_url(admin_url).set(database=self.name).render_as_string(hide_password=False)
        self._execute(f'CREATE DATABASE "{self.name}"')

    def _execute(self, statement: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()

    def drop(self) -> None:
        """Drop the database, closing any connection still open to it."""
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
