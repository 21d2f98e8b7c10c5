"""An embedded MQTT broker (amqtt) for single-machine runs, and a check for whether a broker already answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator

from amqtt.broker import Broker

log = logging.getLogger(__name__)


def broker_config(host: str, port: int) -> dict:
    """amqtt configuration binding only ``host:port``, anonymous clients allowed, no $SYS or packet logging."""
    # Always explicit: amqtt's built-in default listens on 0.0.0.0:1883, which would expose the demo.
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


@contextlib.asynccontextmanager
async def embedded_broker(host: str = "127.0.0.1", port: int = 1883) -> AsyncIterator[tuple[str, int]]:
    """Run an amqtt broker on ``host:port`` for the duration of the block; yields the bound (host, port).

    ``port=0`` binds a free port, which the yielded address reports.
    """
    broker = Broker(broker_config(host, port))
    await broker.start()
    try:
        sockets = broker._servers["default"].instance.sockets  # amqtt keeps the asyncio.Server per listener
        bound = sockets[0].getsockname()[1] if sockets else port
        log.info("embedded MQTT broker listening on %s:%d", host, bound)
        yield host, bound
    finally:
        await broker.shutdown()


async def broker_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port`` within ``timeout`` seconds."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (for servers that cannot report a port-0 bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
