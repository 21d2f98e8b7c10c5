"""Unauthenticated memory exhaustion (issue 17, findings 1 and 2), against a real ``tankwatch run`` whose resident
memory is read from /proc: bounds are generous (a noisy 2-core machine), yet far below what unbounded code takes.
The figures are printed and appended to test-artifacts/security-memory.txt."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.security.server import MIB, OPERATOR, Server, report, running_server

# Growth allowed over the baseline (MiB). Unbounded, the same traffic takes 200 MiB kept, 400+ MiB and 2.5 GiB.
KEPT_AFTER_LONG_USERNAMES_MIB = 96
PEAK_FOR_HUGE_BODY_MIB = 128
PEAK_FOR_CONCURRENT_LOGINS_MIB = 512
HUGE_BODY = 200 * MIB
WAIT_S = 120  # hang guard for one request


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("security-server")) as running:
        yield running


async def _failed_logins(url: str, usernames: list[str], parallel: int) -> list[int]:
    """POST a wrong password for each username, ``parallel`` at a time; the status codes."""
    gate = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:

        async def one(name: str) -> int:
            async with gate:
                response = await client.post("/api/auth/token", data={"username": name, "password": "wrong"})
                return response.status_code

        return list(await asyncio.gather(*(one(n) for n in usernames)))


def test_failed_logins_with_huge_usernames_leave_no_memory_behind(server: Server) -> None:
    asyncio.run(_failed_logins(server.url, ["warm-up"], 1))
    before = server.rss_mib()
    names = [f"{i:04d}" + "u" * (1_000_000 - 4) for i in range(200)]  # 200 distinct 1 MB usernames
    statuses = asyncio.run(_failed_logins(server.url, names, 8))
    after = server.rss_mib()
    line = report("200 failed logins, 1 MB usernames", before=before, after=after, kept=after - before)
    assert after - before < KEPT_AFTER_LONG_USERNAMES_MIB, line
    assert set(statuses) == {422}, "usernames over 128 characters are refused before any hashing"


def _post_raw(url: str, path: str, head: str, pieces: Iterator[bytes]) -> str:
    """Send a request head and the body ``pieces``, stopping as soon as the server answers; its status line."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT_S) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n".encode())
        try:
            for piece in pieces:
                if select.select([sock], [], [], 0)[0]:
                    break  # answered early
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed after answering
        answer = b""
        while b"\r\n" not in answer:
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def test_a_huge_body_without_a_token_is_refused_before_it_is_read(server: Server) -> None:
    before = server.rss_mib()
    server.reset_peak()
    head = f"Content-Type: application/json\r\nContent-Length: {HUGE_BODY}\r\n"
    status = _post_raw(server.url, "/api/users", head, iter([b"x" * MIB] * (HUGE_BODY // MIB)))
    peak = server.peak_mib()
    line = report("200 MB JSON body, no token", before=before, peak=peak, growth=peak - before)
    assert peak - before < PEAK_FOR_HUGE_BODY_MIB, line
    assert status.split()[1:2] in (["401"], ["413"]), status


def _chunked(first: bytes, size: int) -> Iterator[bytes]:
    """A body starting with ``first`` and padded to ``size`` bytes, sent in 1 MiB chunks (Transfer-Encoding:
    chunked, so there is no Content-Length to check up front)."""
    for i in range(size // MIB):
        data = first + b"u" * (MIB - len(first)) if i == 0 else b"u" * MIB
        yield f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_huge_streamed_body_of_a_logged_in_caller_is_cut_off_at_the_limit(server: Server) -> None:
    login, _, secret = OPERATOR
    token = httpx.post(server.url + "/api/auth/token", data={"username": login, "password": secret}, timeout=WAIT_S)
    bearer = token.json()["access_token"]
    before = server.rss_mib()
    server.reset_peak()
    head = (f"Authorization: Bearer {bearer}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n")
    status = _post_raw(server.url, "/api/alarms/x/ack", head, _chunked(b'{"note": "', HUGE_BODY))
    peak = server.peak_mib()
    line = report("200 MB chunked JSON body, logged in", before=before, peak=peak, growth=peak - before)
    assert peak - before < PEAK_FOR_HUGE_BODY_MIB, line
    assert status.split()[1:2] == ["413"], status


async def _logins_while_polling_health(url: str, n: int) -> tuple[list[int], list[int]]:
    """``n`` simultaneous wrong logins (real argon2) while /api/health is polled; both lists of status codes."""
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
        done = asyncio.Event()

        async def poll() -> list[int]:
            seen = []
            while not done.is_set():
                seen.append((await client.get("/api/health")).status_code)
                await asyncio.sleep(0.2)
            return seen

        poller = asyncio.create_task(poll())
        logins = [client.post("/api/auth/token", data={"username": f"user{i}", "password": "wrong"}) for i in range(n)]
        statuses = [r.status_code for r in await asyncio.gather(*logins)]
        done.set()
        return statuses, await poller


def test_concurrent_wrong_logins_hash_a_few_at_a_time(server: Server) -> None:
    before = server.rss_mib()
    server.reset_peak()
    statuses, health = asyncio.run(_logins_while_polling_health(server.url, 48))
    peak = server.peak_mib()
    line = report("48 concurrent wrong logins (argon2 64 MiB each)", before=before, peak=peak, growth=peak - before)
    assert peak - before < PEAK_FOR_CONCURRENT_LOGINS_MIB, line
    assert set(statuses) <= {401, 429, 503} and 401 in statuses, statuses
    assert health and set(health) == {200}, "health answered throughout"
