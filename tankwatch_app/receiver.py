"""Compose the receiver stage from the site's ``receiver:`` section: senders' credentials from the environment,
de-duplication and upload quality in the instance's SQL store, HTTP and TCP listeners, the intake onto the bus."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn

from alarms.credibility import EvidenceStore
from alarms.received_findings import ReceivedFindings
from tankwatch.bus import Bus
from tankwatch.clock import Clock
from tankwatch.config import Site
from tankwatch.records import AlarmEvent
from tankwatch.stages import cancel_all
from tankwatch.stores.events import EventStore
from tankwatch.stores.uplink import UplinkStore
from tiers.credentials import CredentialsError
from tiers.intake import Intake
from tiers.receiver import ReceiverCore, ReceiverLimits, accounts_from_env
from tiers.receiver_http import receiver_app
from tiers.receiver_tcp import TcpReceiver
from tiers.seen import SeenStore

log = logging.getLogger(__name__)


class ReceiverConfigError(ValueError):
    """The receiver cannot start as configured (names the setting or environment variable)."""


def _bound(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port`` (ReceiverConfigError when it cannot be)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ReceiverConfigError(f"receiver: cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class ReceiverStage:
    """The receiver's listeners around one core whose consumer is the intake."""

    def __init__(self, site: Site, bus: Bus, clock: Clock, events: EventStore,
                 escalate: Callable[[list[AlarmEvent]], object] | None = None) -> None:
        """``escalate``: where warnings of lower tiers' routine findings go (this instance's escalation engine)."""
        settings = site.file.receiver
        assert settings is not None
        try:
            accounts = accounts_from_env(settings)
        except CredentialsError as exc:
            raise ReceiverConfigError(str(exc)) from None
        self.settings = settings
        # Bound now, so that a port in use stops the start with a clear error instead of the running instance.
        self._http = _bound(settings.host, settings.http_port) if settings.http_port is not None else None
        self._tcp = _bound(settings.host, settings.tcp_port) if settings.tcp_port is not None else None
        self.store = UplinkStore(events.engine)
        findings = ReceivedFindings(EvidenceStore(events.engine), escalate, clock.now_ms)
        self.intake = Intake(site, bus, clock, self.store, events, findings)
        self.core = ReceiverCore(accounts, SeenStore(events.engine), self.intake, clock,
                                 ReceiverLimits.from_settings(settings))

    async def run(self) -> None:
        """Listen on the configured ports until cancelled."""
        s = self.settings
        tasks: list[asyncio.Task[object]] = []
        tcp = None
        try:
            if self._tcp is not None:
                tcp = TcpReceiver(self.core, s.host, s.tcp_port or 0, s.max_connections, s.idle_timeout_s)
                await tcp.start(self._tcp)
                log.info("receiver: TCP on %s:%d", s.host, s.tcp_port)
            if self._http is not None:
                server = uvicorn.Server(uvicorn.Config(receiver_app(self.core), log_level="warning", lifespan="off"))
                tasks.append(asyncio.create_task(server.serve(sockets=[self._http])))
                log.info("receiver: HTTP on http://%s:%d/{serviceId}", s.host, s.http_port)
            await (asyncio.gather(*tasks) if tasks else asyncio.Event().wait())
        finally:
            await cancel_all(tasks)
            if tcp is not None:
                await tcp.stop()
