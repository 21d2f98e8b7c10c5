"""Schemathesis against the OpenAPI, each case sent as every role: no server error and no response outside the
schema (status codes, content types, bodies). Runs in ``make test`` through the ASGI app, no server needed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.test_scope import fill
from tests.unit.test_auth_support import USERS, headers, make_env

ENV = make_env(Path(tempfile.mkdtemp(prefix="tankwatch-fuzz-")))
fill(ENV)
# One user of each role (operator, safety manager, park and county regulator, tester, admin).
ROLE_USERS = ("op-e1", "zhangwei", "park-reg", "county-reg", "tester", "admin")
HEADERS = {login: headers(ENV, login) for login in ROLE_USERS}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_asgi("/openapi.json", ENV.app, headers=HEADERS["admin"])


def keep_test_users(case) -> None:  # noqa: ANN001 - a schemathesis Case
    """The fuzz may add and remove users, but not the ones whose tokens it is sending."""
    for params in (case.path_parameters, case.body):
        if isinstance(params, dict) and isinstance(params.get("login"), str) and params["login"] in USERS:
            params["login"] = "fuzz-" + params["login"]


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is reproducible, never flaky
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema_for_every_role(case) -> None:  # noqa: ANN001 - a schemathesis Case
    keep_test_users(case)
    for login in ROLE_USERS:
        case.call_and_validate(headers=HEADERS[login], checks=CHECKS)
    case.call_and_validate(checks=CHECKS)  # and with no token at all
