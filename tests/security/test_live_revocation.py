"""Revocation reaches open websockets (issue 17, finding 3): a removed or changed user, an expired token or a moved
scope takes effect on a live connection within the re-check interval, or at once on a user change."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets

from tankwatch import bus as topics
from tankwatch.config import rebuild_site
from tankwatch.records import Quality, ReadingBatch
from tankwatch.site import Role, UserScope
from tests.asgi import serve
from tests.unit.test_auth_support import T0, Env, headers, make_env, sensors_of, site_with_users

WAIT_S = 20  # hang guard only


def token_of(env: Env, login: str) -> str:
    return headers(env, login)["Authorization"].split()[1]


async def publish_one_reading_per_enterprise(env: Env, ts_ms: int) -> None:
    rows = [(env.site.sensor_index(sensors_of(env.site, e.id)[0]), ts_ms, 1.0, int(Quality.GOOD))
            for e in env.site.enterprises]
    await env.bus.publish(topics.READINGS, ReadingBatch.from_columns(*zip(*rows, strict=True)))


async def until_closed(ws, env: Env) -> tuple[list[dict], int]:  # noqa: ANN001 - a websockets connection
    """Messages received until the server closes (readings keep flowing meanwhile), and the close code."""
    got: list[dict] = []
    ts = T0
    while True:
        ts += 1000
        await publish_one_reading_per_enterprise(env, ts)
        try:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 0.5)))
        except TimeoutError:
            continue
        except websockets.ConnectionClosed as closed:
            return got, closed.rcvd.code


@pytest.mark.parametrize("change", ["remove", "replace", "expire"])
async def test_a_revoked_token_closes_the_open_websocket(tmp_path: Path, change: str) -> None:
    site = None
    if change == "expire":  # noticed by the periodic re-check (a user change triggers one at once)
        data = site_with_users().file.model_dump(mode="json", exclude_none=True, by_alias=True)
        data["security"] = {"live_recheck_s": 0.2}
        site = rebuild_site(data, "fast-recheck")
    env = make_env(tmp_path, site)
    url = "ws://127.0.0.1:{}/ws/live?token=" + token_of(env, "op-e1")
    async with serve(env.app) as port, websockets.connect(url.format(port)) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["type"] == "snapshot"
        if change == "remove":
            env.auth.users.remove("op-e1")
        elif change == "replace":  # moved to E3 by re-creating the user: the token dies with the old version
            env.auth.users.add("op-e1", "op-e1", Role.OPERATOR, UserScope(enterprises=["E3"]), "new password 1",
                               now_ms=T0, replace=True)
        else:
            env.auth.clock.advance(env.auth.settings.token_ttl_s + 1)
        got, code = await asyncio.wait_for(until_closed(ws, env), WAIT_S)
    assert code == 4401
    assert got[-1]["type"] == "error" and got[-1]["status"] == 401
    assert "expired" in got[-1]["detail"] if change == "expire" else "removed or changed" in got[-1]["detail"]
    e3 = set(sensors_of(env.site, "E3"))
    assert not any(r[0] in e3 for m in got if m["type"] == "readings" for r in m["rows"])


async def test_a_moved_scope_rescopes_the_open_websocket_at_once(tmp_path: Path) -> None:
    env = make_env(tmp_path)  # the default re-check interval (5 s): the change itself triggers the re-check
    e1, e3 = set(sensors_of(env.site, "E1")), set(sensors_of(env.site, "E3"))
    url = "ws://127.0.0.1:{}/ws/live?token=" + token_of(env, "op-e1")
    async with serve(env.app) as port, websockets.connect(url.format(port)) as ws, httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers=headers(env, "admin")
    ) as admin:
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["type"] == "snapshot"
        moved = await admin.patch("/api/users/op-e1", json={"scope": {"enterprises": ["E3"]}})
        assert moved.status_code == 200 and moved.json()["scope"]["enterprises"] == ["E3"]
        after: list[dict] = []
        ts = T0
        while not any(m["type"] == "readings" and {r[0] for r in m["rows"]} & e3 for m in after):
            ts += 1000
            await publish_one_reading_per_enterprise(env, ts)
            with pytest.raises(TimeoutError):
                while True:
                    after.append(json.loads(await asyncio.wait_for(ws.recv(), 0.3)))
        resnapshot = next(i for i, m in enumerate(after) if m["type"] == "snapshot")
        later = after[resnapshot:]
        assert not any(r[0] in e1 for m in later if m["type"] == "readings" for r in m["rows"])
        assert not any(r[0] in e1 for r in after[resnapshot]["readings"])
    assert env.audit.entries(action="user.update")[0].target_id == "op-e1"
