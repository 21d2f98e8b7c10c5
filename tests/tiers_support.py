"""Shared pieces of the tiers tests: the demo site's codes, test credentials, a collecting consumer, servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from tankwatch.clock import SystemClock
from tankwatch.config import Site, load_site
from tankwatch.site import CodingRules
from tests.asgi import serve
from tiers.coding import SiteCodes
from tiers.credentials import Credentials
from tiers.crypto import cipher_for
from tiers.outbox import Outbox
from tiers.receiver import ReceiverCore, ReceiverLimits, SenderAccount
from tiers.receiver_http import receiver_app
from tiers.schema import ServiceId
from tiers.seen import SeenStore
from tiers.sender import SenderSettings, UplinkSender
from tiers.transports import Transport

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "deploy" / "sites" / "demo-park.yaml"
APP_ID = "ent-e1"
KEYS = {"none": b"sign-key-0123456789abcdef", "aes": b"0123456789abcdef", "sm4": b"fedcba9876543210"}
SM4_IV = b"iv-0123456789abc"


def demo_site() -> Site:
    """The demo park."""
    return load_site(DEMO_SITE)


def demo_codes(site: Site) -> SiteCodes:
    """The demo park's codes under the default rules, district 320623 (如东县)."""
    return SiteCodes.build(site, CodingRules(district_code="320623"))


def credentials(encryption: str = "none", app_id: str = APP_ID, fixed_iv: bool = False) -> Credentials:
    """Test credentials for one encryption."""
    key = KEYS[encryption]
    return Credentials(app_id, key, cipher_for(encryption, key, SM4_IV if fixed_iv else None))


@dataclass
class Collected:
    """Every call a receiver made to its consumer."""

    calls: list[tuple[str, ServiceId, list[Any], bool, str]] = field(default_factory=list)
    fail_next: int = 0  # the next this many calls raise

    async def __call__(self, sender: str, service: ServiceId, records: list[Any], resend: bool, *,
                       data_id: str) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("consumer failed")
        self.calls.append((sender, service, records, resend, data_id))

    def data_ids(self) -> list[str]:
        return [c[4] for c in self.calls]


def make_core(db: Path, accounts: list[SenderAccount], consumer: Collected, clock: Any = None,
              limits: ReceiverLimits | None = None) -> ReceiverCore:
    """A receiver core remembering dataIds in the SQLite file ``db``."""
    seen = SeenStore(create_engine(f"sqlite:///{db}"))
    return ReceiverCore(accounts, seen, consumer, clock or SystemClock(), limits)


def account(encryption: str = "none", enterprises: tuple[str, ...] = ("32062300001",), fixed_iv: bool = False,
            app_id: str = APP_ID) -> SenderAccount:
    """A registered sender."""
    return SenderAccount(credentials(encryption, app_id, fixed_iv), frozenset(enterprises))


def serve_http(core: ReceiverCore, port: int = 0) -> contextlib.AbstractAsyncContextManager[int]:
    """The receiver's ASGI app served on 127.0.0.1 (a free port when 0) in this loop; yields the port."""
    return serve(receiver_app(core), port=port)


@contextlib.asynccontextmanager
async def sending(outbox: Outbox, transport: Transport, creds: Credentials, settings: SenderSettings,
                  target: str = "park") -> AsyncIterator[UplinkSender]:
    """An uplink sender running on ``outbox`` for the duration of the block; its transport closed after."""
    sender = UplinkSender(target, outbox, transport, creds, "320623", SystemClock(), settings)
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await transport.aclose()


async def drained(outbox: Outbox, timeout_s: float = 20) -> None:
    """Wait until the outbox is empty (AssertionError after ``timeout_s``)."""
    for _ in range(round(timeout_s / 0.02)):
        if not len(outbox):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(outbox)} messages still queued after {timeout_s} s")
