"""Ingest's outbox on disk: reading batches its memory bound cannot hold, oldest first, one fsynced file each.

Each batch is one ``<sequence>-<rows>.npz`` file (the four columns), written under a temporary name, fsynced and
renamed, so a crash leaves the whole batch or nothing; files left by an earlier run are sent first after a restart.
Past ``max_bytes`` the oldest files are deleted and their rows counted (the outbox's drop counter).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tankwatch.records import ReadingBatch

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{16})-(\d+)\.npz$")
FIRST_SEQ = 10**12  # sequence numbers start here, leaving room to put a batch before the oldest (put_first)


@dataclass(frozen=True, slots=True)
class Spilled:
    """One batch on disk: its sequence number, rows, size and file."""

    seq: int
    rows: int
    size: int
    path: Path


class BatchSpill:
    """A bounded FIFO of reading batches in a folder; safe for one process, any thread."""

    def __init__(self, folder: str | Path, max_bytes: int, on_drop: Callable[[int, str], None]) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self._lock = threading.Lock()
        self._files: deque[Spilled] = deque()
        self._bytes = 0
        self._rows = 0
        for path in sorted(self.folder.iterdir()):
            match = _NAME.match(path.name)
            if match:
                self._add(Spilled(int(match[1]), int(match[2]), path.stat().st_size, path))
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        self._next = self._files[-1].seq + 1 if self._files else FIRST_SEQ
        if self._files:
            log.warning("ingest outbox %s: %d readings from an earlier run wait to be sent", self.folder, self._rows)

    @property
    def rows(self) -> int:
        """Rows on disk."""
        return self._rows

    def __len__(self) -> int:
        return len(self._files)

    def _add(self, spilled: Spilled) -> None:
        self._files.append(spilled)
        self._bytes += spilled.size
        self._rows += spilled.rows

    def put(self, batch: ReadingBatch, *, first: bool = False) -> None:
        """Write a batch durably (blocking: run it in a thread), after the newest or, ``first``, before the oldest;
        then drop the oldest files past the bound."""
        with self._lock:
            if first and self._files:
                seq = self._files[0].seq - 1
            else:
                seq = self._next
                self._next += 1
        path = self.folder / f"{seq:016d}-{len(batch)}.npz"
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, sensor=batch.sensor, ts_ms=batch.ts_ms, value=batch.value, quality=batch.quality)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename too
        finally:
            os.close(fd)
        with self._lock:
            spilled = Spilled(seq, len(batch), path.stat().st_size, path)
            if first:
                self._files.appendleft(spilled)
                self._bytes += spilled.size
                self._rows += spilled.rows
            else:
                self._add(spilled)
            while self._bytes > self.max_bytes and len(self._files) > 1:
                self._drop("spill_full")

    def _drop(self, reason: str) -> None:
        """Delete the oldest file, counting its rows."""
        oldest = self._files.popleft()
        oldest.path.unlink(missing_ok=True)
        self._bytes -= oldest.size
        self._rows -= oldest.rows
        log.warning("ingest outbox: dropped %d readings on disk (%s)", oldest.rows, reason)
        self.on_drop(oldest.rows, reason)

    def oldest(self) -> tuple[Spilled, ReadingBatch] | None:
        """The oldest batch (blocking: run it in a thread); an unreadable file is dropped and counted
        (``corrupt``); None when nothing is left."""
        with self._lock:
            while self._files:
                first = self._files[0]
                try:
                    with np.load(first.path) as data:
                        return first, ReadingBatch(data["sensor"], data["ts_ms"], data["value"], data["quality"])
                except (OSError, ValueError, KeyError) as exc:
                    log.error("ingest outbox: %s unreadable (%s)", first.path.name, exc)
                    self._drop("corrupt")
            return None

    def remove(self, spilled: Spilled) -> None:
        """Delete a batch that was sent (unless it was dropped past the bound meanwhile)."""
        with self._lock:
            if self._files and self._files[0].seq == spilled.seq:
                self._files.popleft()
                spilled.path.unlink(missing_ok=True)
                self._bytes -= spilled.size
                self._rows -= spilled.rows
