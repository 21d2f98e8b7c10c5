"""NaN, Infinity and other bad JSON (issue 17, finding 5): every route answers 422 naming the field, never 500, and
neither request bodies nor secrets reach the log."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.asgi import serve
from tests.unit.test_auth_support import headers, make_env

SECRET = "p4ssw0rd-that-must-never-be-logged"


def json_body_routes(spec: dict) -> list[tuple[str, str, list[str]]]:
    """(method, path with dummy ids, top-level body properties) of every route taking a JSON body."""
    schemas = spec["components"]["schemas"]
    found = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            schema = content["application/json"]["schema"]
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            concrete = path.replace("{occurrence_id}", "x").replace("{escalation_id}", "x").replace("{login}", "op-e2")
            found.append((method, concrete, sorted(schema.get("properties", {}))))
    return found


@pytest.fixture(scope="module")
def env(tmp_path_factory):  # noqa: ANN201 - an Env
    return make_env(tmp_path_factory.mktemp("bad-input"))


def test_nan_and_infinity_in_any_json_field_are_422_naming_it(env) -> None:  # noqa: ANN001
    with TestClient(env.app, raise_server_exceptions=False) as client:
        routes = json_body_routes(client.get("/openapi.json", headers=headers(env, "admin")).json())
        assert len(routes) >= 11
        for method, path, fields in routes:
            for login in ("admin", "tester", "op-e1"):
                for field in fields:
                    for bad in (float("nan"), float("inf"), float("-inf")):
                        body = json.dumps({field: bad})  # Python writes NaN/Infinity, as an attacker would
                        response = client.request(method, path, content=body, headers={
                            **headers(env, login), "Content-Type": "application/json"})
                        where = (method, path, field, bad, login)
                        assert response.status_code < 500, (where, response.text)
                        if response.status_code == 422:
                            errors = response.json()["detail"]
                            assert all({"loc", "msg", "type"} <= set(e) and "input" not in e for e in errors), where
                whole = client.request(method, path, content="NaN", headers={
                    **headers(env, login), "Content-Type": "application/json"})
                assert whole.status_code in (400, 403, 404, 422), (method, path, whole.text)


async def test_bad_bodies_never_put_the_body_or_a_password_in_the_log(env, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    user = {"login": "new-user", "name": float("nan"), "role": "operator", "scope": {"enterprises": ["E1"]},
            "password": SECRET}
    async with serve(env.app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        admin = headers(env, "admin")
        for body in (user, {**user, "name": float("inf")}, {**user, "scope": float("nan")}, [SECRET], SECRET):
            response = await client.post("/api/users", content=json.dumps(body),
                                         headers={**admin, "Content-Type": "application/json"})
            assert response.status_code == 422, response.text
            assert SECRET not in response.text
        named = await client.post("/api/users", content=json.dumps(user),
                                  headers={**admin, "Content-Type": "application/json"})
        assert named.json()["detail"][0]["loc"] == ["body", "name"]
        for password in (SECRET, SECRET * 40):
            await client.post("/api/auth/token", data={"username": "op-e1", "password": password})
    logged = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert SECRET not in logged
    assert "Traceback" not in logged
