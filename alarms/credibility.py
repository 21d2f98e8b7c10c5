"""Data credibility for regulators: online rate (在线率), completeness, flat-line and interruption counts, and
evidence entries for violations found online.

Statistics are computed from the time-series store through its public ``query`` at a fixed resolution (24 h
window: 10 s buckets; 30 days: 5 min buckets), so one sensor-window is at most ~8,640 rows whatever the
sampling rate. A bucket counts as *present* when it holds a reading and as *online* when its worst quality is
good. Completeness = present buckets / buckets; online rate = online buckets / buckets; an interruption is a
run of buckets without good data lasting at least ``interruption_s``; a flat-line is a run of good buckets whose
value stays within ``flat_tolerance`` for at least ``flat_s``. All thresholds are our defaults (not regulated,
regulations.md Implications [U]) and are parameters.

Evidence (GB-style "线上发现违法线索"): an interruption > 30 min on a level-1/2 source, an alarm shelved past its
maximum, an ESD bypass, a required instrument missing. Each entry keeps the data that shows it (time range,
values, alarm ids) in the ``evidence`` table, which EvidenceStore creates in the events database when missing
(its own MetaData until a migration adds it to the shared one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Column, Index, MetaData, String, Table, Text, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import BigInteger

from alarms import compliance
from alarms.compliance import LatestView
from tankwatch.config import SensorInfo, Site
from tankwatch.metrics import MESSAGES_LOST, READINGS_IN
from tankwatch.records import Quality, ReadingBatch, stable_id
from tankwatch.site import SensorKind
from tankwatch.stores.events import make_engine
from tankwatch.stores.timeseries import TimeSeriesStore

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WINDOWS = {"24h": (DAY_MS, 10_000), "30d": (30 * DAY_MS, 300_000)}  # window → (length, bucket width)
INTERRUPTION_S = 60.0  # our default
FLAT_S = 1800.0  # our default: 30 min unchanged
FLAT_TOLERANCE = 0.0  # our default: exactly unchanged (bucket means of a live signal practically never repeat)
EVIDENCE_INTERRUPTION_S = 1800.0  # issue 4: interruption > 30 min on a level-1/2 source


@dataclass(frozen=True, slots=True)
class Run:
    """A time range [start, end) in epoch ms."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class SensorCredibility:
    """Credibility figures of one sensor over one window."""

    sensor_id: str
    window: str
    start_ms: int
    end_ms: int
    bucket_ms: int
    completeness: float
    online_rate: float
    interruptions: tuple[Run, ...]
    flat_lines: tuple[Run, ...]
    out_of_range_share: float = 0.0  # buckets whose worst reading was out of range / buckets

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "sensor_id": self.sensor_id,
            "window": self.window,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "bucket_ms": self.bucket_ms,
            "completeness": self.completeness,
            "online_rate": self.online_rate,
            "interruption_count": len(self.interruptions),
            "flat_line_count": len(self.flat_lines),
            "longest_interruption_ms": max((r.end_ms - r.start_ms for r in self.interruptions), default=0),
        }


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last+1) index pairs of the True runs of a boolean array."""
    if not mask.any():
        return []
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def sensor_credibility(
    sensor_id: str,
    rows: ReadingBatch,
    start_ms: int,
    end_ms: int,
    bucket_ms: int,
    *,
    window: str = "",
    interruption_s: float = INTERRUPTION_S,
    flat_s: float | None = FLAT_S,
    flat_tolerance: float = FLAT_TOLERANCE,
) -> SensorCredibility:
    """Figures of one sensor from its rows in [start, end) at ``bucket_ms`` resolution (pure; rows any order)."""
    if end_ms <= start_ms or bucket_ms <= 0:
        raise ValueError(f"need start < end and a positive bucket, got {start_ms}, {end_ms}, {bucket_ms}")
    n = -(-(end_ms - start_ms) // bucket_ms)
    inside = (rows.ts_ms >= start_ms) & (rows.ts_ms < end_ms)
    b = (rows.ts_ms[inside] - start_ms) // bucket_ms
    present = np.zeros(n, dtype=bool)
    present[b] = True
    worst = np.zeros(n, dtype=np.int16)
    np.maximum.at(worst, b, rows.quality[inside].astype(np.int16))
    value = np.full(n, np.nan)
    # the bucket's last value (rows sorted by time so later writes win)
    order = np.argsort(rows.ts_ms[inside], kind="stable")
    value[b[order]] = rows.value[inside][order]
    online = present & (worst == Quality.GOOD) & np.isfinite(value)

    def as_run(first: int, stop: int) -> Run:
        return Run(start_ms + first * bucket_ms, min(start_ms + stop * bucket_ms, end_ms))

    need = max(1, math.ceil(interruption_s * 1000 / bucket_ms))
    interruptions = tuple(as_run(f, s) for f, s in _runs(~online) if s - f >= need)
    flats: list[Run] = []
    if flat_s is not None:
        need_flat = max(2, math.ceil(flat_s * 1000 / bucket_ms) + 1)
        same = np.zeros(n, dtype=bool)  # bucket i continues the flat run of bucket i-1
        same[1:] = online[1:] & online[:-1] & (np.abs(np.diff(value)) <= flat_tolerance)
        for f, s in _runs(same):
            if s - f + 1 >= need_flat:
                flats.append(as_run(f - 1, s))
    return SensorCredibility(
        sensor_id=sensor_id,
        window=window,
        start_ms=start_ms,
        end_ms=end_ms,
        bucket_ms=bucket_ms,
        completeness=float(present.mean()),
        online_rate=float(online.mean()),
        interruptions=interruptions,
        flat_lines=tuple(flats),
        out_of_range_share=float((present & (worst == Quality.OUT_OF_RANGE)).mean()),
    )


def read_rows(store: TimeSeriesStore, sensor_index: int, start_ms: int, end_ms: int, bucket_ms: int) -> ReadingBatch:
    """A sensor's rows in [start, end), bucketed by the store when there are more than one per bucket."""
    max_points = max(1, -(-(end_ms - start_ms) // bucket_ms))
    return store.query(sensor_index, start_ms, end_ms, max_points=max_points)


@dataclass(frozen=True, slots=True)
class IngestLoss:
    """Messages lost on the way in, as this process's ingest adapters counted them since it started
    (``tankwatch_messages_lost_total``): by cause (broker_dropped, sequence_gap, inbox_full) and by origin (a
    broker ``host:port`` or a device id)."""

    total: int
    by_cause: dict[str, int]
    by_origin: dict[str, int]

    def for_enterprise(self, site: Site, enterprise_id: str) -> int:
        """Messages lost by the devices whose sensors belong to an enterprise (a broker's loss is the park's)."""
        devices = {i.device_id for i in site.sensors if i.enterprise_id == enterprise_id and i.device_id}
        return sum(n for origin, n in self.by_origin.items() if origin in devices)


def ingest_loss() -> IngestLoss | None:
    """The loss counted in this process, or None when no ingest adapter runs here (a dashboard of its own:
    the figures are on the ingest process's /metrics)."""
    by_cause: dict[str, int] = {}
    by_origin: dict[str, int] = {}
    for sample in _totals(MESSAGES_LOST):
        n = int(sample.value)
        by_cause[sample.labels["cause"]] = by_cause.get(sample.labels["cause"], 0) + n
        by_origin[sample.labels["origin"]] = by_origin.get(sample.labels["origin"], 0) + n
    if not by_cause and not any(s.value for s in _totals(READINGS_IN)):
        return None
    return IngestLoss(sum(by_cause.values()), by_cause, by_origin)


def _totals(counter: Any) -> list[Any]:
    """The ``…_total`` samples of a Prometheus counter."""
    return [s for metric in counter.collect() for s in metric.samples if s.name.endswith("_total")]


def sensors_over(
    sensors: Iterable[SensorInfo], store: TimeSeriesStore, start_ms: int, end_ms: int, bucket_ms: int, *,
    window: str = "", interruption_s: float = INTERRUPTION_S, flat_s: float = FLAT_S,
    flat_tolerance: float = FLAT_TOLERANCE,
) -> list[tuple[SensorInfo, SensorCredibility]]:
    """Each sensor's figures over [start, end), in buckets of at least ``bucket_ms`` and its expected period (an ESD
    valve's state is meant to hold: no flat-lines for it)."""
    out = []
    for info in sensors:
        width = max(bucket_ms, int(info.sensor.expected_period_s * 1000))
        flat = None if info.sensor.kind == SensorKind.ESD_VALVE else flat_s
        rows = read_rows(store, info.index, start_ms, end_ms, width)
        out.append((info, sensor_credibility(info.sensor.id, rows, start_ms, end_ms, width, window=window,
                                             interruption_s=interruption_s, flat_s=flat,
                                             flat_tolerance=flat_tolerance)))
    return out


def site_credibility(
    site: Site, store: TimeSeriesStore, now_ms: int, windows: Sequence[str] = ("24h", "30d"),
    loss: IngestLoss | None = None,
) -> dict[str, Any]:
    """Per sensor and per enterprise figures for each window, as JSON-ready data; with ``loss``, each enterprise's
    ``messages_lost`` (None: not known in this process).

    A window starts no earlier than monitoring did (the oldest stored reading of the site): a system running for an
    hour is judged on that hour, not on 23 hours before it existed; a sensor silent since then counts offline."""
    since = store.first_ts()
    out: dict[str, Any] = {"ts_ms": now_ms, "monitoring_since_ms": since, "windows": {}}
    for name in windows:
        length, bucket = WINDOWS[name]
        start = now_ms - length if since is None or since >= now_ms else max(now_ms - length, since)
        sensors = sensors_over(site.sensors, store, start, now_ms, bucket, window=name)
        enterprises = []
        for ent in site.enterprises:
            mine = [c for i, c in sensors if i.enterprise_id == ent.id]
            enterprises.append(
                {
                    "enterprise_id": ent.id,
                    "sensors": len(mine),
                    "online_rate": float(np.mean([c.online_rate for c in mine])) if mine else None,
                    "completeness": float(np.mean([c.completeness for c in mine])) if mine else None,
                    "interruption_count": sum(len(c.interruptions) for c in mine),
                    "flat_line_count": sum(len(c.flat_lines) for c in mine),
                    "messages_lost": None if loss is None else loss.for_enterprise(site, ent.id),
                }
            )
        out["windows"][name] = {
            "start_ms": start,
            "sensors": [{**c.to_dict(), "enterprise_id": i.enterprise_id} for i, c in sensors],
            "enterprises": enterprises,
        }
    return out


# ---------------------------------------------------------------------------------------------- evidence

# Own MetaData for now: on tankwatch.stores.events.metadata the table would show as drift against the alembic
# migrations (tankwatch/migrations) until a revision adds it; EvidenceStore creates it when missing.
evidence_metadata = MetaData()
evidence_table = Table(
    "evidence",
    evidence_metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("enterprise_id", String(64), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("sensor_id", String(64)),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger),  # None while ongoing
    Column("found_ms", BigInteger, nullable=False),
    Column("summary_zh", String(500), nullable=False),
    Column("summary_en", String(500), nullable=False),
    Column("data", Text, nullable=False),  # JSON: time range, values, alarm ids
    Index("ix_evidence_found", "found_ms"),
    Index("ix_evidence_enterprise", "enterprise_id"),
)

EVIDENCE_KINDS = ("interruption", "shelved_past_max", "esd_bypass", "instrument_missing")


@dataclass(frozen=True, slots=True)
class Evidence:
    """One violation found online, with the data that shows it."""

    id: str
    kind: str
    enterprise_id: str
    source_id: str
    sensor_id: str | None
    start_ms: int
    end_ms: int | None
    found_ms: int
    summary_zh: str
    summary_en: str
    data: Mapping[str, Any]

    def row(self) -> dict:
        """Column mapping."""
        return {
            "id": self.id,
            "kind": self.kind,
            "enterprise_id": self.enterprise_id,
            "source_id": self.source_id,
            "sensor_id": self.sensor_id,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "found_ms": self.found_ms,
            "summary_zh": self.summary_zh[:500],
            "summary_en": self.summary_en[:500],
            "data": json.dumps(self.data, ensure_ascii=False, sort_keys=True, default=_json_default),
        }


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class EvidenceStore:
    """The evidence table (created if missing), idempotent by id; a later record may close an open range."""

    def __init__(self, engine: Engine | str) -> None:
        self.engine = make_engine(engine) if isinstance(engine, str) else engine
        try:
            evidence_table.create(self.engine, checkfirst=True)
        except DBAPIError:  # another process (an alarm worker starting too) created it between the check and here
            if not inspect(self.engine).has_table(evidence_table.name):
                raise

    def add(self, entries: Sequence[Evidence]) -> list[str]:
        """Insert new entries; for known ids only a newly known end time is written. Returns the ids inserted."""
        if not entries:
            return []
        inserted: list[str] = []
        e = evidence_table.c
        with self.engine.begin() as conn:
            ids = [x.id for x in entries]
            known = dict(conn.execute(select(e.id, e.end_ms).where(e.id.in_(ids))).all())
            for entry in {x.id: x for x in entries}.values():
                if entry.id not in known:
                    conn.execute(evidence_table.insert().values(**entry.row()))
                    inserted.append(entry.id)
                elif known[entry.id] is None and entry.end_ms is not None:
                    conn.execute(
                        evidence_table.update()
                        .where(e.id == entry.id)
                        .values(end_ms=entry.end_ms, data=entry.row()["data"])
                    )
        return inserted

    def list(
        self, enterprise_ids: Collection[str] | None = None, since_ms: int | None = None, limit: int = 500,
        kinds: Collection[str] | None = None,
    ) -> list[dict]:
        """Entries, newest found first, with ``data`` decoded."""
        e = evidence_table.c
        query = select(evidence_table).order_by(e.found_ms.desc(), e.id).limit(limit)
        if enterprise_ids is not None:
            query = query.where(e.enterprise_id.in_(list(enterprise_ids)))
        if kinds is not None:
            query = query.where(e.kind.in_(list(kinds)))
        if since_ms is not None:
            query = query.where(e.found_ms >= since_ms)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for r in rows:
            r["data"] = json.loads(r["data"])
        return rows


class EvidenceRecorder:
    """Finds violations from what the pipeline sees each time it is called; the ids are stable so a repeated
    finding updates nothing and an ended interruption or bypass gets its end time."""

    def __init__(self, site: Site, interruption_s: float = EVIDENCE_INTERRUPTION_S,
                 enterprises: Collection[str] | None = None) -> None:
        """``enterprises``: look at these only (an alarm worker's, which sees no other readings), or all."""
        self.site = site
        self.interruption_ms = int(interruption_s * 1000)
        self.enterprises = None if enterprises is None else frozenset(enterprises)
        self._sensors = [i for i in site.sensors if self.enterprises is None or i.enterprise_id in self.enterprises]
        # each source's level and enterprise with its clause-28 requirements: the site is immutable, worked out once
        self.requirements = {src.id: compliance.SourceRequirements(site, src, ent.id) for ent, src in site.sources()}
        n = len(site.sensors)
        self._last_good = np.full(n, -1, dtype=np.int64)
        self._last_good_value = np.full(n, np.nan)
        self._baseline: int | None = None
        self._open: dict[str, Evidence] = {}  # ongoing interruption/bypass by evidence id
        self._bypass_since: dict[int, int] = {}
        self._reported: set[str] = set()  # configuration findings already returned

    def update(
        self, now_ms: int, latest: ReadingBatch | LatestView, active_alarms: Sequence[Mapping[str, Any]] = ()
    ) -> list[Evidence]:
        """Evidence found or closed at ``now_ms`` (store them with EvidenceStore.add)."""
        view = latest if isinstance(latest, LatestView) else LatestView(self.site, latest)
        if self._baseline is None:
            self._baseline = now_ms
        good = view.quality == Quality.GOOD
        newer = good & (view.ts > self._last_good)
        self._last_good[newer] = view.ts[newer]
        self._last_good_value[newer] = view.value[newer]
        found: list[Evidence] = []
        still_open: set[str] = set()
        for info in self._sensors:
            src = info.source_id
            if self.requirements[src].level in (1, 2):
                ev = self._interruption(info, now_ms, view)
                if ev is not None:
                    still_open.add(ev.id)
                    if ev.id not in self._open:
                        self._open[ev.id] = ev
                        found.append(ev)
            if info.sensor.kind == SensorKind.ESD_VALVE:
                ev = self._bypass(info, now_ms, view)
                if ev is not None:
                    still_open.add(ev.id)
                    if ev.id not in self._open:
                        self._open[ev.id] = ev
                        found.append(ev)
        for eid in [k for k in self._open if k not in still_open]:
            ev = self._open.pop(eid)
            found.append(_closed(ev, now_ms))
        found += self._shelved(now_ms, active_alarms)
        found += self._missing(now_ms)
        return found

    def _interruption(self, info, now_ms: int, view: LatestView) -> Evidence | None:  # noqa: ANN001 - SensorInfo
        i = info.index
        if view.online(info, now_ms):
            return None
        since = int(self._last_good[i]) if self._last_good[i] >= 0 else int(self._baseline or now_ms)
        if now_ms - since <= self.interruption_ms:
            return None
        src = info.source_id
        level = self.requirements[src].level
        data = {
            "start_ms": since,
            "last_good_ts_ms": int(self._last_good[i]) if self._last_good[i] >= 0 else None,
            "last_good_value": _num(self._last_good_value[i]),
            "latest_ts_ms": int(view.ts[i]) if view.ts[i] >= 0 else None,
            "latest_quality": Quality(int(view.quality[i])).label if view.quality[i] < len(Quality) else "bad",
            "level": level,
        }
        minutes = (now_ms - since) / 60_000
        return Evidence(
            stable_id("evidence", "interruption", info.sensor.id, since),
            "interruption",
            self.requirements[src].enterprise_id,
            src,
            info.sensor.id,
            since,
            None,
            now_ms,
            f"{src}（{level}级重大危险源）{info.sensor.id} 数据中断超过30分钟（已{minutes:.0f}分钟）",
            f"{src} (level-{level} major hazard) {info.sensor.id}: data interrupted > 30 min "
            f"({minutes:.0f} min so far)",
            data,
        )

    def _bypass(self, info, now_ms: int, view: LatestView) -> Evidence | None:  # noqa: ANN001 - SensorInfo
        i = info.index
        bypassed = view.quality[i] == Quality.GOOD and np.isfinite(view.value[i]) and round(view.value[i]) == 2
        if not bypassed:
            self._bypass_since.pop(i, None)
            return None
        since = self._bypass_since.setdefault(i, int(view.ts[i]))
        src = info.source_id
        return Evidence(
            stable_id("evidence", "esd_bypass", info.sensor.id, since),
            "esd_bypass",
            self.requirements[src].enterprise_id,
            src,
            info.sensor.id,
            since,
            None,
            now_ms,
            f"{src} {info.sensor.id} 紧急切断被旁路",
            f"{src} {info.sensor.id}: ESD bypassed",
            {"start_ms": since, "value": 2, "latest_ts_ms": int(view.ts[i])},
        )

    def _shelved(self, now_ms: int, alarms: Sequence[Mapping[str, Any]]) -> list[Evidence]:
        """Shelved alarms past their maximum: ``shelved_until_ms`` in the past while still shelved, or
        ``shelved_since_ms`` + ``max_shelve_s`` exceeded (the lifecycle's field names as far as known)."""
        out = []
        for a in alarms:
            if not (a.get("shelved") or str(a.get("state", "")).lower() == "shelved"):
                continue
            until = a.get("shelved_until_ms")
            since, max_s = a.get("shelved_since_ms"), a.get("max_shelve_s")
            deadline = until if until is not None else (since + max_s * 1000 if since is not None and max_s else None)
            if deadline is None or now_ms <= deadline:
                continue
            src = str(a.get("source_id"))
            if src not in self.requirements:
                continue
            occ = str(a.get("occurrence_id"))
            out.append(
                Evidence(
                    stable_id("evidence", "shelved_past_max", occ, deadline),
                    "shelved_past_max",
                    self.requirements[src].enterprise_id,
                    src,
                    a.get("sensor_id"),
                    int(since) if since is not None else int(deadline),
                    None,
                    now_ms,
                    f"{src} {a.get('sensor_id')} {a.get('condition')} 报警搁置超过最长时限",
                    f"{src} {a.get('sensor_id')} {a.get('condition')}: alarm shelved past its maximum",
                    {"alarm_ids": [occ], "deadline_ms": deadline, "alarm": dict(a)},
                )
            )
        return out

    def _missing(self, now_ms: int) -> list[Evidence]:
        """Required instruments not configured (configuration gaps of major storage units): recorded once."""
        out = []
        for ent, src in self.site.sources():
            if self.enterprises is not None and ent.id not in self.enterprises:
                continue
            result = self.requirements[src.id].check()
            for gap in result.gaps:
                eid = stable_id("evidence", "instrument_missing", src.id, gap.rule, gap.tank_id, gap.sensor_id)
                if eid in self._reported:
                    continue
                self._reported.add(eid)
                out.append(
                    Evidence(
                        eid,
                        "instrument_missing",
                        ent.id,
                        src.id,
                        gap.sensor_id,
                        now_ms,
                        now_ms,
                        now_ms,
                        f"{src.id} {gap.text_zh}",
                        f"{src.id} {gap.text_en}",
                        {"rule": gap.rule, "tank_id": gap.tank_id, "level": result.level},
                    )
                )
        return out


def _closed(ev: Evidence, now_ms: int) -> Evidence:
    """The same evidence with its end time."""
    return Evidence(
        ev.id, ev.kind, ev.enterprise_id, ev.source_id, ev.sensor_id, ev.start_ms, now_ms, ev.found_ms,
        ev.summary_zh, ev.summary_en, {**ev.data, "end_ms": now_ms},
    )


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
