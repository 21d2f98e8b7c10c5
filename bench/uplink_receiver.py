"""The receiving process of ``tankwatch bench uplink``: a tankwatch receiver over HTTP whose consumer keeps a ledger
(each accepted dataId with its records, and every time a dataId reached the consumer again), so the bench can count
what was lost and what was doubled. Run as ``python -m bench.uplink_receiver FOLDER PORT``; the key and appId come
from TW_BENCH_APP_ID and TW_BENCH_KEY."""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import uvicorn
from sqlalchemy import create_engine

from tankwatch.clock import SystemClock
from tankwatch.site import ReceiverSettings
from tiers.receiver import ReceiverCore, ReceiverLimits, accounts_from_env
from tiers.receiver_http import receiver_app
from tiers.schema import ServiceId
from tiers.seen import SeenStore

ENTERPRISES = ["32062300001", "32062300002", "32062300003"]


class Ledger:
    """Records by dataId, each message committed with its dataId in one transaction; a repeat is noted."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS delivered (data_id TEXT PRIMARY KEY, records INTEGER, resend "
                        "INTEGER)")
        self.db.execute("CREATE TABLE IF NOT EXISTS repeats (data_id TEXT)")

    async def __call__(self, sender: str, service: ServiceId, records: list, resend: bool, *, data_id: str) -> None:
        """Take one accepted message."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if self.db.execute("SELECT 1 FROM delivered WHERE data_id = ?", (data_id,)).fetchone():
                self.db.execute("INSERT INTO repeats VALUES (?)", (data_id,))
                return
            self.db.execute("INSERT INTO delivered VALUES (?, ?, ?)", (data_id, len(records), int(resend)))


async def main(folder: str, port: int) -> None:
    """Serve until killed; print ``ready`` once listening."""
    settings = ReceiverSettings(senders=[{"app_id_env": "TW_BENCH_APP_ID", "key_env": "TW_BENCH_KEY",
                                          "encryption": "sm4", "enterprises": ENTERPRISES}], rate_per_s=100_000,
                                rate_burst=100_000)
    seen = SeenStore(create_engine(f"sqlite:///{folder}/seen.db"))
    core = ReceiverCore(accounts_from_env(settings), seen, Ledger(f"{folder}/ledger.db"), SystemClock(),
                        ReceiverLimits.from_settings(settings))
    server = uvicorn.Server(uvicorn.Config(receiver_app(core), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
