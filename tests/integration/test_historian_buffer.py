"""The historian's disk buffer: durable chunks in order, recovery after a restart, oldest-first drops past the
bound (every one counted), and unreadable chunks dropped and counted."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tankwatch.stores.buffer import DiskBuffer


def lines(start: int, n: int) -> list[str]:
    return [f"readings,sensor=s value={i}.0 {1_714_550_400_000 + i}" for i in range(start, start + n)]


def append(buffer: DiskBuffer, chunk: list[str]) -> None:
    buffer.append(gzip.compress("\n".join(chunk).encode()), len(chunk))


def read(body: bytes) -> list[str]:
    return body.decode().split("\n")


def drain(buffer: DiskBuffer, max_points: int = 1000) -> list[str]:
    out: list[str] = []
    while len(buffer):
        chunks, body = buffer.peek(max_points)
        out += read(body)
        buffer.remove(chunks)
    return out


def test_chunks_come_back_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path, 10_000_000)
    for k in range(5):
        append(buffer, lines(k * 10, 10))
    assert buffer.points == 50 and len(buffer) == 5
    chunks, body = buffer.peek(25)  # whole chunks only: two of ten
    assert read(body) == lines(0, 20) and len(chunks) == 2
    buffer.remove(chunks)
    (tmp_path / "0000000000000099-3.lp.gz.tmp").write_bytes(b"half a chunk")  # a crash mid-write

    again = DiskBuffer(tmp_path, 10_000_000)
    assert again.points == 30
    assert not list(tmp_path.glob("*.tmp"))
    append(again, lines(50, 5))
    assert drain(again) == lines(20, 35)
    assert again.points == 0 and again.size_bytes == 0 and not list(tmp_path.iterdir())


def test_past_the_bound_the_oldest_chunks_go_first_and_are_counted(tmp_path: Path) -> None:
    drops: list[tuple[int, str]] = []
    probe = DiskBuffer(tmp_path / "probe", 10_000_000)
    append(probe, lines(0, 100))
    chunk_size = probe.size_bytes
    buffer = DiskBuffer(tmp_path / "b", int(chunk_size * 3.5), on_drop=lambda n, why: drops.append((n, why)))
    for k in range(10):
        append(buffer, lines(k * 100, 100))
        assert buffer.size_bytes <= chunk_size * 3.5 * 1.2  # never far past the bound
    assert buffer.dropped == sum(n for n, _ in drops) == 1000 - buffer.points
    assert {why for _, why in drops} == {"buffer_full"}
    kept = drain(buffer)
    assert kept == lines(1000 - len(kept), len(kept))  # the newest points, in order


def test_an_unreadable_chunk_is_dropped_and_counted(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path, 10_000_000)
    append(buffer, lines(0, 10))
    append(buffer, lines(10, 10))
    first = sorted(tmp_path.iterdir())[0]
    first.write_bytes(b"not gzip")
    reopened = DiskBuffer(tmp_path, 10_000_000)
    assert drain(reopened) == lines(10, 10)
    assert reopened.dropped == 10


def test_a_bound_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        DiskBuffer(tmp_path, 0)


def test_a_buffer_told_not_to_drop_keeps_everything_and_says_it_is_full(tmp_path: Path) -> None:
    probe = DiskBuffer(tmp_path / "probe", 10_000_000)
    append(probe, lines(0, 100))
    buffer = DiskBuffer(tmp_path / "b", int(probe.size_bytes * 3.5), drop_past_bound=False)
    for k in range(3):
        append(buffer, lines(k * 100, 100))
    assert not buffer.full
    for k in range(3, 10):
        append(buffer, lines(k * 100, 100))
        assert buffer.full
    assert buffer.dropped == 0 and drain(buffer) == lines(0, 1000)
    assert not buffer.full
