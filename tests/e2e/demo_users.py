"""Dashboard users for the browser tests, written into the demo's SQL store before the demo starts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "e2e-password-123"  # noqa: S105 - a throwaway password for a throwaway demo database


@dataclass(frozen=True)
class DemoUser:
    """A login the tests use, with its role and scope."""

    login: str
    name: str
    role: str
    scope: dict
    password: str = PASSWORD


USERS = {
    "operator_e1": DemoUser("e2e-op-e1", "E1 值班操作员", "operator", {"enterprises": ["E1"]}),
    "operator_e2": DemoUser("e2e-op-e2", "E2 值班操作员", "operator", {"enterprises": ["E2"]}),
    "regulator": DemoUser("e2e-park", "园区监管员", "park_regulator", {"park": "rudong"}),
    "tester": DemoUser("e2e-tester", "测试员", "tester", {"park": "rudong"}),
    "admin": DemoUser("e2e-admin", "系统管理员", "admin", {"park": "rudong"}),
}


def seed_users(data_dir: Path) -> str | None:
    """Create USERS in the demo's database under ``data_dir``; None when done, else why it cannot be done.

    The demo keeps its SQL store at ``<data-dir>/demo/tankwatch.db``; migrating it first means the demo finds the
    schema it expects and the user tables next to it.
    """
    try:
        from tankwatch.site import UserScope
        from tankwatch.stores.events import make_engine, sqlite_url
        from tankwatch.stores.users import UserStore
    except ImportError as exc:  # the auth module is not there yet
        return f"user store not available ({exc})"
    url = sqlite_url(data_dir / "demo")
    try:
        from tankwatch.migrations import upgrade
    except ImportError:
        upgrade = None
    if upgrade is not None:
        upgrade(url)
    engine = make_engine(url)
    try:
        store = UserStore(engine)
        now = int(time.time() * 1000)
        for user in USERS.values():
            scope = UserScope(**user.scope)
            store.add(user.login, user.name, user.role, scope, user.password, now_ms=now, replace=True)
    finally:
        engine.dispose()
    return None
