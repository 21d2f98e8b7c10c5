"""``tankwatch bench uplink``: points/s through the uplink (outbox → sender → HTTP with SM4) into a receiver in
another process, then a forced outage (the receiver killed -9 while the site keeps queueing snapshots and alarms)
and the backlog's drain after the restart; every message is counted on both sides, so lost and doubled are exact."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tankwatch.broker import free_port
from tankwatch.clock import SystemClock
from tankwatch.config import load_site
from tankwatch.records import AlarmAction, AlarmEvent
from tankwatch.site import CodingRules
from tiers.coding import SiteCodes
from tiers.credentials import credentials_from_env
from tiers.enqueue import queue_records
from tiers.outbound import LatestValues, alarm_record
from tiers.outbox import Outbox
from tiers.schema import ServiceId
from tiers.sender import SenderSettings, UplinkSender
from tiers.transports import HttpTransport

DEMO_SITE = Path(__file__).resolve().parent.parent / "deploy" / "sites" / "demo-park.yaml"
ROOT = Path(__file__).resolve().parent.parent


async def _start_receiver(folder: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.uplink_receiver", str(folder), str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    if line.strip() != "ready":
        raise RuntimeError(f"the receiver did not start: {line!r}")
    return proc


async def _drained(outbox: Outbox, timeout_s: float) -> float:
    """Seconds until the outbox is empty (TimeoutError after ``timeout_s``)."""
    start = time.perf_counter()
    while len(outbox):
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError(f"{len(outbox)} messages still queued after {timeout_s:g} s")
        await asyncio.sleep(0.01)
    return time.perf_counter() - start


async def run_uplink_bench(points: int, records_per_message: int, outage_s: float, snapshots_per_s: float,
                           drain_per_s: float, timeout_s: float, say: Callable[[str], None]) -> dict[str, Any]:
    """Run both phases; the figures as a dict (``lost`` and ``doubled`` must be 0)."""
    site = load_site(DEMO_SITE)
    codes = SiteCodes.build(site, CodingRules(district_code="320623"))
    env = {**os.environ, "TW_BENCH_APP_ID": "bench", "TW_BENCH_KEY": "hex:" + secrets.token_hex(16)}
    creds = credentials_from_env("bench", "TW_BENCH_APP_ID", "TW_BENCH_KEY", "sm4", environ=env)
    latest = LatestValues(site, codes)
    clock = SystemClock()
    queued: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="tw-bench-uplink-") as scratch:
        folder = Path(scratch)
        port = free_port()
        receiver = await _start_receiver(folder, port, env)
        outbox = Outbox(folder / "outbox.db", 10**10, "bench")
        sender = UplinkSender("bench", outbox, HttpTransport(f"http://127.0.0.1:{port}", 5), creds, "320623", clock,
                              SenderSettings(ack_timeout_s=5, backoff_initial_s=0.2, backoff_max_s=1,
                                             drain_per_s=drain_per_s))
        task = asyncio.create_task(sender.run())
        try:
            snapshot = latest.snapshot(clock.now_ms())
            records = (snapshot * (records_per_message // len(snapshot) + 1))[:records_per_message]
            messages = max(1, points // records_per_message)
            say(f"throughput: {messages} REALTIME messages of {records_per_message} points, SM4 over HTTP")
            start = time.perf_counter()
            for _ in range(messages):
                for data_id in queue_records(outbox, ServiceId.REALTIME, records, clock.now_ms(),
                                             records_per_message):
                    queued[data_id] = records_per_message
                sender.notify()
            await _drained(outbox, timeout_s)
            seconds = time.perf_counter() - start
            throughput = messages * records_per_message / seconds
            say(f"outage: the receiver killed -9 for {outage_s:g} s while snapshots and alarms are queued")
            receiver.send_signal(signal.SIGKILL)
            receiver.wait()
            end = time.monotonic() + outage_s
            i = 0
            while time.monotonic() < end:
                now = clock.now_ms()
                for data_id in queue_records(outbox, ServiceId.REALTIME, latest.snapshot(now), now, 1000):
                    queued[data_id] = len(site.sensors)
                if i % 10 == 0:
                    event = AlarmEvent(f"bench-ev{i}", f"bench-occ{i}", "T101-LT-A", "HH", AlarmAction.RAISED, now,
                                       "critical", "E1", "HS1")
                    [data_id] = queue_records(outbox, ServiceId.ALARM, [alarm_record(event, codes)], now, 10)
                    queued[data_id] = 1
                sender.notify()
                i += 1
                await asyncio.sleep(1 / snapshots_per_s)
            backlog = len(outbox)
            receiver = await _start_receiver(folder, port, env)
            drain_s = await _drained(outbox, timeout_s)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sender.transport.aclose()
            receiver.send_signal(signal.SIGKILL)
            receiver.wait()
        dead = len(outbox.dead_letters())
        outbox.close()
        ledger = sqlite3.connect(folder / "ledger.db")
        delivered = dict(ledger.execute("SELECT data_id, records FROM delivered"))
        repeats = ledger.execute("SELECT COUNT(*) FROM repeats").fetchone()[0]
        resent = ledger.execute("SELECT COUNT(*) FROM delivered WHERE resend = 1").fetchone()[0]
        ledger.close()
    lost = sum(1 for data_id in queued if data_id not in delivered)
    wrong = sum(1 for data_id, n in queued.items() if data_id in delivered and delivered[data_id] != n)
    return {
        "points": messages * records_per_message, "records_per_message": records_per_message,
        "points_per_s": round(throughput), "messages_per_s": round(messages / seconds, 1),
        "outage_s": outage_s, "backlog_messages": backlog, "drain_s": round(drain_s, 2),
        "drain_messages_per_s": round(backlog / drain_s, 1) if drain_s else None, "drain_per_s_setting": drain_per_s,
        "resent_messages": resent, "dead_letters": dead, "messages_queued": len(queued),
        "lost": lost + wrong, "doubled": repeats,
    }
