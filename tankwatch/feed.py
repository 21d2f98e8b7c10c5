"""Reading feeds on disk: Parquet with one row per reading, as the adapters produced it (quality, device time).

Columns: ``sensor_id`` (dictionary-encoded string), ``ts_ms`` (int64, UTC epoch ms), ``value`` (float64, NaN when
no value), ``quality`` (uint8 Quality code). Rows keep arrival order. The file's key-value metadata
``tankwatch.feed`` holds JSON: format version, park id, site path, what wrote it, when, and the row count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tankwatch.config import Site
from tankwatch.metrics import INPUT_REJECTED
from tankwatch.records import ReadingBatch

FEED_FORMAT = "tankwatch.feed/1"
METADATA_KEY = b"tankwatch.feed"
STAGE = "feed"
ROW_GROUP_ROWS = 256 * 1024  # rows buffered before a row group is written
SCHEMA = pa.schema(
    [
        pa.field("sensor_id", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("ts_ms", pa.int64(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("quality", pa.uint8(), nullable=False),
    ]
)


class FeedError(Exception):
    """A feed file that cannot be read or does not belong to the site; the message names the file."""


@dataclass(frozen=True)
class FeedInfo:
    """A feed's metadata."""

    path: str
    format: str
    park_id: str
    site_path: str
    source: str  # what wrote it: record, scenario:<name>, …
    created_ms: int
    rows: int
    first_ts_ms: int | None
    last_ts_ms: int | None


class FeedWriter:
    """Appends reading batches of one site to a Parquet feed; ``close()`` (or the with-block) finishes it."""

    def __init__(self, path: str | Path, site: Site, source: str = "record") -> None:
        self.path = Path(path)
        self.site = site
        self.source = source
        self._dictionary = pa.array([s.sensor.id for s in site.sensors], type=pa.string())
        self._pending: list[ReadingBatch] = []
        self._pending_rows = 0
        self.rows = 0
        self._first: int | None = None
        self._last: int | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        # The metadata (row count, time span) is known only at the end, so the file is written under a
        # temporary name and renamed: a crash leaves no file that looks complete.
        self._writer: pq.ParquetWriter | None = None

    def write(self, batch: ReadingBatch) -> None:
        """Buffer a batch; full row groups go to disk."""
        if not len(batch):
            return
        self._pending.append(batch)
        self._pending_rows += len(batch)
        self.rows += len(batch)
        lo, hi = int(batch.ts_ms.min()), int(batch.ts_ms.max())
        self._first = lo if self._first is None else min(self._first, lo)
        self._last = hi if self._last is None else max(self._last, hi)
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _table(self, batch: ReadingBatch) -> pa.Table:
        sensor = pa.DictionaryArray.from_arrays(pa.array(batch.sensor, type=pa.int32()), self._dictionary)
        return pa.Table.from_arrays(
            [sensor, pa.array(batch.ts_ms), pa.array(batch.value), pa.array(batch.quality)], schema=SCHEMA
        )

    def _flush(self) -> None:
        if not self._pending:
            return
        batch = ReadingBatch.concat(self._pending)
        self._pending, self._pending_rows = [], 0
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, SCHEMA, compression="zstd")
        self._writer.write_table(self._table(batch), row_group_size=ROW_GROUP_ROWS)

    def close(self) -> FeedInfo:
        """Write what is buffered and the metadata; the feed appears under its name only now."""
        self._flush()
        if self._writer is None:  # no readings at all: still a valid, empty feed
            self._writer = pq.ParquetWriter(self._tmp, SCHEMA, compression="zstd")
            self._writer.write_table(SCHEMA.empty_table())
        meta = {
            "format": FEED_FORMAT,
            "park_id": self.site.file.park.id,
            "site_path": str(self.site.path),
            "source": self.source,
            "created_ms": time.time_ns() // 1_000_000,
            "rows": self.rows,
            "first_ts_ms": self._first,
            "last_ts_ms": self._last,
        }
        self._writer.add_key_value_metadata({METADATA_KEY: json.dumps(meta).encode()})
        self._writer.close()
        self._tmp.replace(self.path)
        return _info(self.path, meta)

    def abort(self) -> None:
        """Drop a half-written feed."""
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> FeedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _info(path: Path, meta: dict) -> FeedInfo:
    return FeedInfo(
        path=str(path),
        format=meta["format"],
        park_id=meta["park_id"],
        site_path=meta.get("site_path", ""),
        source=meta.get("source", ""),
        created_ms=int(meta.get("created_ms", 0)),
        rows=int(meta["rows"]),
        first_ts_ms=meta.get("first_ts_ms"),
        last_ts_ms=meta.get("last_ts_ms"),
    )


def read_info(path: str | Path) -> FeedInfo:
    """A feed's metadata; FeedError when the file is not a tankwatch feed of a known format."""
    path = Path(path)
    try:
        file_meta = pq.read_metadata(path)
        schema = file_meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowInvalid) as exc:
        raise FeedError(f"{path}: not a readable Parquet feed: {exc}") from None
    raw = (file_meta.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise FeedError(f"{path}: Parquet file without tankwatch feed metadata (not written by tankwatch)")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise FeedError(f"{path}: feed metadata is not JSON") from None
    if meta.get("format") != FEED_FORMAT:
        raise FeedError(f"{path}: feed format {meta.get('format')!r}, this version reads {FEED_FORMAT!r}")
    missing = [c for c in SCHEMA.names if c not in schema.names]
    if missing:
        raise FeedError(f"{path}: feed lacks columns {missing}")
    return _info(path, meta)


def iter_feed(path: str | Path, site: Site, batch_rows: int = 1 << 18) -> Iterator[ReadingBatch]:
    """The feed's readings in file order as site-indexed batches; rows naming unknown sensors are counted and
    dropped. FeedError when the feed belongs to another park."""
    info = read_info(path)
    if info.park_id != site.file.park.id:
        raise FeedError(f"{path}: feed of park {info.park_id!r}, but the site is park {site.file.park.id!r}")
    index_of = {s.sensor.id: s.index for s in site.sensors}
    parquet = pq.ParquetFile(path)
    for rb in parquet.iter_batches(batch_size=batch_rows, columns=SCHEMA.names):
        sensor_col = rb.column(0)
        if isinstance(sensor_col, pa.DictionaryArray):
            lookup = np.array([index_of.get(s, -1) for s in sensor_col.dictionary.to_pylist()], dtype=np.int32)
            codes = sensor_col.indices.to_numpy(zero_copy_only=False)
            sensor = lookup[codes] if len(lookup) else np.full(len(codes), -1, dtype=np.int32)
        else:  # a writer that did not dictionary-encode
            sensor = np.array([index_of.get(s, -1) for s in sensor_col.to_pylist()], dtype=np.int32)
        batch = ReadingBatch(
            sensor,
            rb.column(1).to_numpy().astype(np.int64, copy=False),
            rb.column(2).to_numpy().astype(np.float64, copy=False),
            rb.column(3).to_numpy().astype(np.uint8, copy=False),
        )
        unknown = sensor < 0
        if unknown.any():
            INPUT_REJECTED.labels(STAGE, "unknown_sensor").inc(int(unknown.sum()))
            batch = batch.take(~unknown)
        if len(batch):
            yield batch
