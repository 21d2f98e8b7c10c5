"""SQL store of dashboard users: login, role, scope and an argon2 password hash (tables on the events metadata)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.types import BigInteger

from tankwatch.site import Role, UserScope
from tankwatch.stores.events import metadata
from tankwatch.stores.files import restrict_sqlite_files

users = Table(
    "users",
    metadata,
    Column("login", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("scope_park", String(64)),
    Column("scope_county", String(200)),
    Column("password_hash", String(200), nullable=False),
    Column("token_version", Integer, nullable=False, default=1),  # bumped on password change: old tokens die
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_ms", BigInteger, nullable=False),
)

user_enterprises = Table(
    "user_enterprises",
    metadata,
    Column("login", String(64), ForeignKey("users.login", ondelete="CASCADE"), primary_key=True),
    Column("enterprise_id", String(64), primary_key=True),
)

# Which scope each role may hold; testers and admins may hold any.
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.OPERATOR: frozenset({"enterprises"}),
    Role.SAFETY_MANAGER: frozenset({"enterprises"}),
    Role.PARK_REGULATOR: frozenset({"park"}),
    Role.COUNTY_REGULATOR: frozenset({"county"}),
    Role.TESTER: frozenset({"enterprises", "park", "county"}),
    Role.ADMIN: frozenset({"enterprises", "park", "county"}),
}

MIN_PASSWORD = 8


class UserError(ValueError):
    """A user that cannot be stored as asked, with the reason."""


@dataclass(frozen=True, slots=True)
class User:
    """A stored user (never carries the password hash out of the store)."""

    login: str
    name: str
    role: Role
    scope: UserScope
    token_version: int
    disabled: bool
    created_ms: int

    @property
    def scope_kind(self) -> str:
        """``enterprises``, ``park`` or ``county``."""
        return next(k for k in ("enterprises", "park", "county") if getattr(self.scope, k) is not None)


def check_role_scope(role: Role, scope: UserScope) -> None:
    """Raise UserError when a role cannot hold this kind of scope (e.g. an operator scoped to a county)."""
    kind = next(k for k in ("enterprises", "park", "county") if getattr(scope, k) is not None)
    if kind not in ROLE_SCOPES[role]:
        allowed = " or ".join(sorted(ROLE_SCOPES[role]))
        raise UserError(f"role {role.value} needs a scope of {allowed}, not {kind}")


class UserStore:
    """Users in SQL (SQLite or PostgreSQL); passwords hashed with argon2id."""

    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.hasher = hasher or PasswordHasher()
        restrict_sqlite_files(engine)
        metadata.create_all(engine, tables=[users, user_enterprises])
        self._listeners: list[Callable[[str], None]] = []
        # A verification against this hash costs what a real one costs, so unknown logins are not faster.
        self._dummy_hash = self.hasher.hash("not-a-password-of-anyone")

    def add(
        self, login: str, name: str, role: Role | str, scope: UserScope, password: str, *, now_ms: int, replace=False
    ) -> User:
        """Create a user (or, with ``replace``, overwrite one); UserError names what is wrong."""
        role = Role(role)
        check_role_scope(role, scope)
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password of {login!r} is shorter than {MIN_PASSWORD} characters")
        row = {
            "login": login,
            "name": name,
            "role": role.value,
            "scope_park": scope.park,
            "scope_county": scope.county,
            "password_hash": self.hasher.hash(password),
            "disabled": False,
            "created_ms": now_ms,
        }
        with self.engine.begin() as conn:
            old = conn.execute(select(users.c.token_version).where(users.c.login == login)).scalar_one_or_none()
            if old is not None and not replace:
                raise UserError(f"user {login!r} exists already")
            if old is not None:
                conn.execute(update(users).where(users.c.login == login).values(**row, token_version=old + 1))
            else:
                conn.execute(users.insert().values(**row, token_version=1))
            _write_enterprises(conn, login, scope)
        self._changed(login)
        user = self.get(login)
        assert user is not None
        return user

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(login)`` after every change this store makes (from whichever thread made it)."""
        self._listeners.append(listener)

    def _changed(self, login: str) -> None:
        for listener in self._listeners:
            listener(login)

    def update(
        self,
        login: str,
        *,
        name: str | None = None,
        role: Role | None = None,
        scope: UserScope | None = None,
        disabled: bool | None = None,
    ) -> User:
        """Change what is given of a user's name, role, scope and disabled flag; UserError names what is wrong.

        A new scope keeps their tokens valid (open websockets are re-scoped); a new role ends their tokens, which
        carry the role; a disabled user's tokens stop working until enabled again."""
        user = self.get(login)
        if user is None:
            raise UserError(f"no user {login!r}")
        new_role, new_scope = role or user.role, scope or user.scope
        check_role_scope(new_role, new_scope)
        values: dict[str, object] = {"role": new_role.value, "scope_park": new_scope.park,
                                     "scope_county": new_scope.county}
        if name is not None:
            values["name"] = name
        if disabled is not None:
            values["disabled"] = disabled
        if new_role != user.role:
            values["token_version"] = users.c.token_version + 1
        with self.engine.begin() as conn:
            conn.execute(update(users).where(users.c.login == login).values(**values))
            _write_enterprises(conn, login, new_scope)
        self._changed(login)
        changed = self.get(login)
        assert changed is not None
        return changed

    def get(self, login: str) -> User | None:
        """The user with this login, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.login == login)).mappings().one_or_none()
            if row is None:
                return None
            ents = conn.scalars(
                select(user_enterprises.c.enterprise_id)
                .where(user_enterprises.c.login == login)
                .order_by(user_enterprises.c.enterprise_id)
            ).all()
        return _user(row, list(ents))

    def list(self) -> list[User]:
        """Every user, by login."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(users).order_by(users.c.login)).mappings().all()
            pairs = conn.execute(select(user_enterprises).order_by(user_enterprises.c.enterprise_id)).all()
        ents: dict[str, list[str]] = {}
        for login, enterprise_id in pairs:
            ents.setdefault(login, []).append(enterprise_id)
        return [_user(row, ents.get(row["login"], [])) for row in rows]

    def remove(self, login: str) -> bool:
        """Delete a user; False when there was none."""
        with self.engine.begin() as conn:
            conn.execute(delete(user_enterprises).where(user_enterprises.c.login == login))
            removed = conn.execute(delete(users).where(users.c.login == login)).rowcount > 0
        if removed:
            self._changed(login)
        return removed

    def set_password(self, login: str, password: str) -> None:
        """Replace a password; tokens issued before stop working."""
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password of {login!r} is shorter than {MIN_PASSWORD} characters")
        with self.engine.begin() as conn:
            done = conn.execute(
                update(users)
                .where(users.c.login == login)
                .values(password_hash=self.hasher.hash(password), token_version=users.c.token_version + 1)
            )
        if done.rowcount == 0:
            raise UserError(f"no user {login!r}")
        self._changed(login)

    def verify(self, login: str, password: str) -> User | None:
        """The user when the password is right, else None (same work either way)."""
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(users.c.password_hash, users.c.disabled).where(users.c.login == login)
            ).one_or_none()
        try:
            self.hasher.verify(stored[0] if stored else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if stored is None or stored[1]:
            return None
        return self.get(login)


def _write_enterprises(conn, login: str, scope: UserScope) -> None:  # noqa: ANN001 - a SQLAlchemy connection
    """Replace the enterprise ids a user's scope lists (none for park and county scopes)."""
    conn.execute(delete(user_enterprises).where(user_enterprises.c.login == login))
    if scope.enterprises:
        conn.execute(user_enterprises.insert(), [{"login": login, "enterprise_id": e} for e in scope.enterprises])


def _user(row, enterprises: list[str]) -> User:  # noqa: ANN001 - a SQLAlchemy row mapping
    if row["scope_park"] is not None:
        scope = UserScope(park=row["scope_park"])
    elif row["scope_county"] is not None:
        scope = UserScope(county=row["scope_county"])
    else:
        scope = UserScope(enterprises=enterprises)
    return User(
        login=row["login"],
        name=row["name"],
        role=Role(row["role"]),
        scope=scope,
        token_version=row["token_version"],
        disabled=bool(row["disabled"]),
        created_ms=row["created_ms"],
    )
