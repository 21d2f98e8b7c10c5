"""Durable store-and-forward buffer: line-protocol chunks as fsynced, gzipped files, bounded on disk.

Each chunk is one file named ``<sequence>-<points>.lp.gz`` written to a temporary name, fsynced and renamed, so a
crash leaves either the whole chunk or nothing. Chunks are read back oldest first. Past ``max_bytes`` the oldest
chunks are deleted — the only way points leave unsent — and every dropped point is counted; unless the buffer is told
not to (``drop_past_bound=False``): then its writer holds back while it is :attr:`~DiskBuffer.full` (the historian
pauses its Kafka consumers, so the topic's retention is the buffer beyond the bound).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{16})-(\d+)\.lp\.gz$")

DropHook = Callable[[int, str], None]
"""Called with (points, reason) whenever points are dropped."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One buffered chunk: its sequence number, points, size on disk, and file."""

    seq: int
    points: int
    size: int
    path: Path


class DiskBuffer:
    """A bounded FIFO of line-protocol chunks in a folder; safe for one process, any thread."""

    def __init__(self, folder: str | Path, max_bytes: int, on_drop: DropHook | None = None, *,
                 drop_past_bound: bool = True) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self.drop_past_bound = drop_past_bound
        self.dropped = 0  # points dropped since start, by any reason
        self._lock = threading.Lock()
        self._chunks: deque[Chunk] = deque()
        self._bytes = 0
        self._points = 0
        self._recover()

    def _recover(self) -> None:
        """Pick up chunks left by an earlier run, in order; half-written temporaries are removed."""
        found = []
        for path in self.folder.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append(Chunk(int(match[1]), int(match[2]), path.stat().st_size, path))
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        for chunk in sorted(found, key=lambda c: c.seq):
            self._chunks.append(chunk)
            self._bytes += chunk.size
            self._points += chunk.points
        self._next_seq = (self._chunks[-1].seq + 1) if self._chunks else 0
        if self._chunks:
            log.warning("historian buffer %s: %d points from an earlier run wait to be sent", self.folder,
                        self._points)

    @property
    def points(self) -> int:
        """Points waiting."""
        return self._points

    @property
    def size_bytes(self) -> int:
        """Bytes on disk."""
        return self._bytes

    @property
    def full(self) -> bool:
        """Whether the bound is reached."""
        return self._bytes >= self.max_bytes

    def __len__(self) -> int:
        return len(self._chunks)

    def append(self, data: bytes, points: int) -> None:
        """Write a chunk of ``points`` lines, gzip-compressed (one body, newline-separated), durably; then drop the
        oldest chunks while the buffer is past its bound (if it drops)."""
        if not points:
            return
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            path = self.folder / f"{seq:016d}-{points}.lp.gz"
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            self._sync_folder()
            self._chunks.append(Chunk(seq, points, len(data), path))
            self._bytes += len(data)
            self._points += points
            while self.drop_past_bound and self._bytes > self.max_bytes and len(self._chunks) > 1:
                self._drop_oldest("buffer_full")

    def _sync_folder(self) -> None:
        """Make the rename durable too."""
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _drop_oldest(self, reason: str) -> None:
        chunk = self._chunks.popleft()
        chunk.path.unlink(missing_ok=True)
        self._bytes -= chunk.size
        self._points -= chunk.points
        self.dropped += chunk.points
        log.warning("historian buffer: dropped %d points (%s)", chunk.points, reason)
        if self.on_drop:
            self.on_drop(chunk.points, reason)

    def peek(self, max_points: int) -> tuple[list[Chunk], bytes]:
        """The oldest chunks holding at most ``max_points`` (at least one chunk) and their lines in one body.

        An unreadable chunk (disk damage) is dropped and counted as ``corrupt``.
        """
        with self._lock:
            taken: list[Chunk] = []
            bodies: list[bytes] = []
            points = 0
            for chunk in list(self._chunks):
                if taken and points + chunk.points > max_points:
                    break
                try:
                    body = gzip.decompress(chunk.path.read_bytes())
                except (OSError, EOFError) as exc:
                    log.error("historian buffer: chunk %s unreadable (%s)", chunk.path.name, exc)
                    if self._chunks and self._chunks[0] is chunk and not taken:
                        self._drop_oldest("corrupt")
                        continue
                    break
                taken.append(chunk)
                bodies.append(body)
                points += chunk.points
            return taken, b"\n".join(bodies)

    def remove(self, chunks: Sequence[Chunk]) -> None:
        """Delete chunks that were sent (they must be the oldest, as :meth:`peek` returned them)."""
        with self._lock:
            for chunk in chunks:
                if not self._chunks or self._chunks[0].seq != chunk.seq:
                    continue  # already dropped past the bound while it was being sent
                self._chunks.popleft()
                chunk.path.unlink(missing_ok=True)
                self._bytes -= chunk.size
                self._points -= chunk.points
