"""A real tankwatch server — ``tankwatch run`` (uvicorn) on a private 127.0.0.1 port, in a process of its own — whose
resident memory the security tests read from /proc. No tests here."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tankwatch.broker import free_port
from tankwatch.config import load_site

ROOT = Path(__file__).parents[2]
SITE_FILE = ROOT / "deploy" / "sites" / "demo-park.yaml"
MEMORY_REPORT = ROOT / "test-artifacts" / "security-memory.txt"  # the figures of the last run, one line a check
START_TIMEOUT_S = 90  # a hang guard only
MIB = 1024 * 1024
OPERATOR = ("op-e1", "SECURITY_TEST_OP_PASSWORD", "operator-password-0123")


def site_file(folder: Path, security: dict[str, Any] | None = None) -> Path:
    """The demo park without field devices (nothing to poll), with one operator whose password is in the
    environment (as production wants), and the given ``security`` section."""
    data = load_site(SITE_FILE).file.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["devices"] = []
    login, env_name, _ = OPERATOR
    data["users"] = [{"login": login, "name": login, "role": "operator", "scope": {"enterprises": ["E1"]},
                      "password_env": env_name}]
    if security is not None:
        data["security"] = security
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@dataclass
class Server:
    """A running server: its URL and process, and readings of its memory."""

    url: str
    process: subprocess.Popen
    log: Path

    def rss_mib(self) -> float:
        """Resident memory now."""
        return self._status_kib("VmRSS") / 1024

    def peak_mib(self) -> float:
        """The highest resident memory since the last :meth:`reset_peak` (VmHWM)."""
        return self._status_kib("VmHWM") / 1024

    def reset_peak(self) -> None:
        """Start a new peak measurement (writing 5 to clear_refs resets VmHWM)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def log_tail(self) -> str:
        """The last lines the server wrote."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def _status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {field} in /proc/{self.process.pid}/status")


@contextlib.contextmanager
def running_server(folder: Path, security: dict[str, Any] | None = None) -> Iterator[Server]:
    """Start ``tankwatch run`` on a free port with its data in ``folder``; stop it (by its pid) afterwards."""
    port = free_port()
    log = folder / "server.log"
    env = {**os.environ, OPERATOR[1]: OPERATOR[2]}
    command = [sys.executable, "-m", "tankwatch", "run", "--config", str(site_file(folder, security)),
               "--port", str(port), "--data-dir", str(folder / "data")]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tankwatch run exited with {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.url + "/api/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"tankwatch run did not answer within {START_TIMEOUT_S} s:\n{server.log_tail()}")
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def report(name: str, **figures: float) -> str:
    """One line of measured memory: printed (``pytest -s`` shows it), appended to MEMORY_REPORT, and returned for
    the assertion message."""
    line = f"{name}: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in figures.items())
    print(f"[security] {line}")
    MEMORY_REPORT.parent.mkdir(parents=True, exist_ok=True)
    with MEMORY_REPORT.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
    return line
