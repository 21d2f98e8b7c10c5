"""Quix Streams as the Kafka peer: installed with pip into a venv of its own in a scratch folder, its app run with
that venv's Python on 127.0.0.1, counting what it evaluated into a status file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.feed import DEADBAND, LIMITS
from bench.peers.node_red import cache_dir
from bench.services import stop_process

HARNESS = Path(__file__).resolve().parent / "quix-streams"  # requirements.txt and app.py (committed)


def install_dir() -> Path:
    """Where the Quix Streams venv lives: $TANKWATCH_QUIX_DIR, else ~/.cache/tankwatch/quix-streams."""
    return cache_dir("TANKWATCH_QUIX_DIR", "quix-streams")


def pinned_version() -> str:
    """The Quix Streams version requirements.txt pins."""
    for line in (HARNESS / "requirements.txt").read_text().splitlines():
        if line.startswith("quixstreams=="):
            return line.partition("==")[2].strip()
    raise RuntimeError(f"{HARNESS / 'requirements.txt'} pins no quixstreams version")


def installed_version(python: Path) -> str | None:
    """The Quix Streams version that ``python`` imports, None when it has none."""
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", "import quixstreams; print(quixstreams.__version__)"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_installed(where: Path | None = None, log=print) -> Path:
    """Make a venv with the pinned Quix Streams in ``where`` unless it is there already; returns its Python."""
    where = where or install_dir()
    python = where / "bin" / "python"
    want = pinned_version()
    if installed_version(python) != want:
        log(f"installing Quix Streams {want} into {where} (pip, a venv of its own) …")
        steps = ([sys.executable, "-m", "venv", str(where)],
                 [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                  str(HARNESS / "requirements.txt")])
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(step[:4])} … failed: {(done.stderr or done.stdout).strip()[-800:]}")
        if installed_version(python) != want:
            raise RuntimeError(f"Quix Streams {want} is not importable from {python} after the install")
    return python


@dataclass(frozen=True)
class QuixCounts:
    """What the app has evaluated: points, messages, limit transitions, first and last record's time (epoch s)."""

    points: int = 0
    messages: int = 0
    transitions: int = 0
    first_s: float = 0.0
    last_s: float = 0.0


class QuixApp:
    """The peer app consuming ``topic`` from its start in a group of its own until it has seen ``expected`` points."""

    def __init__(self, python: Path, bootstrap: str, topic: str, expected: int) -> None:
        self.python, self.bootstrap, self.topic, self.expected = python, bootstrap, topic, expected
        self.workdir = Path(tempfile.mkdtemp(prefix="tankwatch-quix-"))  # the app's state folder goes here
        self.status = self.workdir / "status.json"
        self.log = self.workdir / "app.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> QuixApp:
        limits = [LIMITS["HH"], LIMITS["H"], LIMITS["L"], LIMITS["LL"], DEADBAND]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [str(self.python), str(HARNESS / "app.py"), self.bootstrap, self.topic, f"quix-{time.time_ns()}",
                 str(self.status), str(self.expected), *map(str, limits)],
                cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def counts(self) -> QuixCounts:
        """The app's last status (zeros before its first); RuntimeError with its log when it failed."""
        assert self.process is not None
        if self.process.poll() not in (None, 0):
            raise RuntimeError(f"the Quix Streams app exited with {self.process.returncode}: {self.log_tail()}")
        try:
            return QuixCounts(**json.loads(self.status.read_text()))
        except (OSError, ValueError):
            return QuixCounts()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> QuixApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
