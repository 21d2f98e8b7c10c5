"""A receiver process for the kill -9 test: HTTP or TCP on a port, accepted dataIds in SQLite, and a consumer that
stores records idempotently by dataId in its own SQLite file (and counts the calls that came again)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import orjson
import uvicorn
from sqlalchemy import create_engine

from tankwatch.clock import SystemClock
from tankwatch.site import ReceiverSettings
from tiers.receiver import ReceiverCore, accounts_from_env
from tiers.receiver_http import receiver_app
from tiers.receiver_tcp import TcpReceiver
from tiers.schema import ServiceId
from tiers.seen import SeenStore


class Store:
    """Records by dataId, each message's records committed with its dataId in one transaction."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS delivered (data_id TEXT PRIMARY KEY, service TEXT, records TEXT,"
                        " resend INTEGER)")
        self.db.execute("CREATE TABLE IF NOT EXISTS repeats (data_id TEXT)")

    async def __call__(self, sender: str, service: ServiceId, records: list, resend: bool, *, data_id: str) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if self.db.execute("SELECT 1 FROM delivered WHERE data_id = ?", (data_id,)).fetchone():
                self.db.execute("INSERT INTO repeats VALUES (?)", (data_id,))
                return
            rows = orjson.dumps([r.model_dump(exclude_none=True) for r in records]).decode()
            self.db.execute("INSERT INTO delivered VALUES (?, ?, ?, ?)", (data_id, service.value, rows, int(resend)))


async def main(folder: str, kind: str, port: int, encryption: str) -> None:
    settings = ReceiverSettings(senders=[{"app_id_env": "TW_TEST_APP_ID", "key_env": "TW_TEST_KEY",
                                          "encryption": encryption, "enterprises": ["32062300001", "32062300002",
                                                                                    "32062300003"]}])
    seen = SeenStore(create_engine(f"sqlite:///{folder}/seen.db"))
    core = ReceiverCore(accounts_from_env(settings), seen, Store(f"{folder}/records.db"), SystemClock())
    if kind == "tcp":
        await TcpReceiver(core, "127.0.0.1", port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()
    server = uvicorn.Server(uvicorn.Config(receiver_app(core), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
