"""A receiver process killed -9 in the middle of a stream and restarted: every message arrives, none twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from tankwatch.broker import free_port
from tankwatch.clock import SystemClock
from tankwatch.records import AlarmAction, AlarmEvent
from tests.tiers_support import KEYS, credentials, demo_codes, demo_site, drained, sending
from tiers.enqueue import queue_records
from tiers.outbound import LatestValues, alarm_record
from tiers.outbox import Outbox
from tiers.schema import ServiceId
from tiers.sender import SenderSettings
from tiers.transports import HttpTransport, TcpTransport

ROOT = Path(__file__).resolve().parents[2]
SITE = demo_site()
CODES = demo_codes(SITE)


async def start_receiver(folder: Path, kind: str, port: int, encryption: str) -> subprocess.Popen:
    env = {**os.environ, "TW_TEST_APP_ID": "ent-e1", "TW_TEST_KEY": "hex:" + KEYS[encryption].hex()}
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.tiers_receiver_proc", str(folder), kind,
                             str(port), encryption], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
    assert line.strip() == "ready", line
    return proc


def retries() -> float:
    return sum(s.value for m in REGISTRY.collect() if m.name == "tankwatch_uplink_retries"
               for s in m.samples if s.labels.get("target") == "restart" and s.name.endswith("_total"))


@pytest.mark.parametrize(("kind", "encryption"), [("http", "sm4"), ("tcp", "aes")])
async def test_a_receiver_killed_mid_stream_loses_and_doubles_nothing(tmp_path: Path, kind: str,
                                                                      encryption: str) -> None:
    port = free_port()
    receiver = await start_receiver(tmp_path, kind, port, encryption)
    outbox = Outbox(tmp_path / "uplink.db", 10**9, "restart")
    transport = HttpTransport(f"http://127.0.0.1:{port}", 1) if kind == "http" else TcpTransport("127.0.0.1", port, 1)
    settings = SenderSettings(ack_timeout_s=1, backoff_initial_s=0.05, backoff_max_s=0.3, drain_per_s=500)
    queued: dict[str, int] = {}
    latest = LatestValues(SITE, CODES)
    before = retries()
    try:
        async with sending(outbox, transport, credentials(encryption), settings, "restart") as sender:
            for i in range(150):  # 3 s of traffic: a snapshot slice every 20 ms, an alarm event every 100 ms
                now = SystemClock().now_ms()
                for data_id in queue_records(outbox, ServiceId.REALTIME, latest.snapshot(now)[:5], now, 1000):
                    queued[data_id] = 5
                if i % 5 == 0:
                    event = AlarmEvent(f"ev{i}", f"occ{i}", "T101-LT-A", "HH", AlarmAction.RAISED, now, "high", "E1",
                                       "HS1")
                    queued[queue_records(outbox, ServiceId.ALARM, [alarm_record(event, CODES)], now, 10)[0]] = 1
                sender.notify()
                if i == 50:
                    receiver.send_signal(signal.SIGKILL)
                    receiver.wait()
                if i == 100:
                    receiver = await start_receiver(tmp_path, kind, port, encryption)
                await asyncio.sleep(0.02)
            await drained(outbox, 30)
    finally:
        receiver.send_signal(signal.SIGKILL)
        receiver.wait()
    assert not len(outbox) and not outbox.dead_letters()
    assert retries() > before  # the outage was felt
    db = sqlite3.connect(tmp_path / "records.db")
    delivered = {data_id: len(orjson.loads(rows)) for data_id, rows in db.execute("SELECT data_id, records FROM "
                                                                                    "delivered")}
    assert delivered == queued  # every message, with all its records, exactly once
    resent = db.execute("SELECT COUNT(*) FROM delivered WHERE resend = 1").fetchone()[0]
    assert resent > 0  # the messages queued during the outage came from the backlog
