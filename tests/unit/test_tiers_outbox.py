"""The uplink outbox: live before backlog, bounded with real-time values dropped first (counted), alarms and base data
never dropped, dead letters kept, and every message whose put returned survives a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from tankwatch.site import UplinkTarget
from tests.tiers_support import demo_codes, demo_site
from tiers.outbox import Outbox, default_queue_bytes
from tiers.sizing import heartbeat_bytes, queue_bound_bytes, snapshot_bytes


def dropped(target: str, service: str) -> float:
    return REGISTRY.get_sample_value("tankwatch_uplink_dropped_total", {"target": target, "service": service}) or 0


def test_live_messages_go_before_the_backlog_which_goes_oldest_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.db", 10_000_000, "order")
    old = [box.put("REALTIME", b"[1]", 1, created_ms=t) for t in (1000, 2000)]
    tried = box.put("ALARM", b"[2]", 1, created_ms=59_000)
    live = box.put("REALTIME", b"[3]", 1, created_ms=60_000)
    seq = {p.data_id: p.seq for p in box.due(0, 0, set(), 10)}
    box.attempted(seq[tried], next_ms=0)  # tried once already: backlog, though recent
    order = [p.data_id for p in box.due(now_ms=60_000, live_from_ms=50_000, exclude=set(), limit=10)]
    assert order == [live, *old, tried]
    assert [p.data_id for p in box.due(60_000, 50_000, exclude={seq[live]}, limit=2)] == old
    box.retry_at(seq[old[0]], 70_000)
    assert old[0] not in [p.data_id for p in box.due(60_000, 50_000, set(), 10)]
    assert box.due(60_000, 50_000, set(), 10)[1].attempts == 0 and box.oldest_seq("ALARM") == seq[tried]


def test_past_the_bound_the_oldest_realtime_go_and_are_counted_alarms_and_base_never(tmp_path: Path) -> None:
    body = orjson.dumps([{"v": "x" * 90}])  # 100 bytes
    box = Outbox(tmp_path / "q.db", 5 * len(body), "bound")
    before = dropped("bound", "REALTIME")
    alarm = box.put("ALARM", body, 1, 1)
    realtime = [box.put("REALTIME", body, 1, t) for t in range(2, 6)]
    base = box.put("BASE_TARGET", body, 1, 7)  # 6 messages > 5: the oldest REALTIME goes
    assert dropped("bound", "REALTIME") == before + 1
    left = [p.data_id for p in box.due(10**9, 0, set(), 100)]
    assert left == [alarm, *realtime[1:], base] and box.size_bytes == 5 * len(body)
    for t in range(8, 12):
        box.put("ALARM", body, 1, t)  # alarms push every realtime out, and stay past the bound themselves
    services = [p.service for p in box.due(10**9, 0, set(), 100)]
    assert services.count("REALTIME") == 0 and services.count("ALARM") == 5 and "BASE_TARGET" in services
    assert dropped("bound", "REALTIME") == before + 4 and box.size_bytes == 6 * len(body)


def test_delivered_and_dead_lettered_messages_leave_the_queue_and_everything_survives_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.db", 10_000, "reopen")
    ids = [box.put("ALARM", b'[{"n":%d}]' % i, 1, i) for i in range(3)]
    seqs = [p.seq for p in box.due(100, 0, set(), 10)]
    box.delivered(seqs[0])
    box.dead_letter(seqs[1], 1005, "data[0].n: unknown member", 50)
    box.attempted(seqs[2], 99)
    box.close()
    again = Outbox(tmp_path / "q.db", 10_000, "reopen")
    [left] = again.due(100, 0, set(), 10)
    assert (left.data_id, left.attempts, left.records_json) == (ids[2], 1, b'[{"n":2}]')
    assert again.dead_letters() == [(ids[1], "ALARM", 1005, "data[0].n: unknown member")]
    assert len(again) == 1 and again.size_bytes == len(b'[{"n":2}]')


def test_the_default_bound_holds_seven_days_of_the_sites_realtime_traffic() -> None:
    assert default_queue_bytes(1000, 10, 100, 60, days=7) == 60_480 * 1000 + 10_080 * 100
    site = demo_site()
    codes = demo_codes(site)
    target = UplinkTarget(id="p", url="http://127.0.0.1:1", app_id_env="A", key_env="K")
    per_snapshot = snapshot_bytes(site, codes)
    assert per_snapshot >= 200 * len(site.sensors)  # every record at its longest: codes, times, 24-digit values
    assert queue_bound_bytes(site, codes, target) == 60_480 * per_snapshot + 10_080 * heartbeat_bytes(site, codes)
    pinned = target.model_copy(update={"queue_max_mb": 2.0})
    assert queue_bound_bytes(site, codes, pinned) == 2 * 1024 * 1024


WRITER = textwrap.dedent("""
    import sys
    from tiers.outbox import Outbox
    box = Outbox(sys.argv[1], 10**9, "kill")
    i = 0
    while True:
        data_id = box.put("ALARM", b'[{"i":%d}]' % i, 1, i)
        print(data_id, flush=True)
        i += 1
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_every_put_that_returned_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    confirmed = []
    deadline = time.monotonic() + 60
    while len(confirmed) < 200 and time.monotonic() < deadline:
        confirmed.append(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    confirmed += [line.strip() for line in proc.stdout if line.strip()]  # printed before the kill landed
    assert len(confirmed) >= 200
    box = Outbox(path, 10**9, "kill")
    assert box._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    queued = [p.data_id for p in box.due(10**12, 0, set(), 10**6)]
    assert queued[: len(confirmed)] == confirmed  # every confirmed put is there, in order
    assert len(queued) - len(confirmed) <= 1  # at most the one committed as the kill landed, before its print
