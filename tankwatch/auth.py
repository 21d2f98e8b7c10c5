"""Authentication and scope: OAuth2 password logins issuing JWTs, login rate limits, who may see which enterprise."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from tankwatch import metrics
from tankwatch.clock import Clock, SystemClock
from tankwatch.config import Site
from tankwatch.site import Role, UserScope
from tankwatch.stores.users import User, UserError, UserStore

log = logging.getLogger(__name__)

SECRET_ENV = "TANKWATCH_SECRET_KEY"
ALGORITHM = "HS256"
ISSUER = "tankwatch"
MIN_SECRET_BYTES = 32
# Values people copy from examples; refused outside the demo however long they are.
PLACEHOLDER_SECRETS = frozenset(
    {"changethis", "change-me", "changeme", "secret", "password", "demo", "tankwatch", "your-secret-key", "xxx"}
)


class AuthConfigError(ValueError):
    """Authentication settings that must not be used, with the reason."""


class LoginRefused(Exception):
    """Wrong login or password (deliberately not saying which)."""


class LoginRateLimited(Exception):
    """Too many failed logins for this login from this address."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")


class InvalidToken(Exception):
    """A token that is missing, malformed, expired, or whose user no longer exists or changed."""


@dataclass(frozen=True)
class AuthSettings:
    """Token secret and lifetimes; ``from_env`` refuses placeholder secrets outside the demo."""

    secret: str
    token_ttl_s: int = 8 * 3600
    max_failures: int = 5
    failure_window_s: int = 900
    demo: bool = False

    def __post_init__(self) -> None:
        if not self.demo:
            check_secret(self.secret)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, demo: bool = False, **kw) -> AuthSettings:
        """Secret from TANKWATCH_SECRET_KEY; when unset a random one (tokens then end with the process)."""
        env = os.environ if environ is None else environ
        secret = env.get(SECRET_ENV)
        if not secret:
            if not demo:
                log.warning("%s is not set: using a random secret, so tokens end when the process does", SECRET_ENV)
            secret = secrets.token_urlsafe(MIN_SECRET_BYTES)
        return cls(secret=secret, demo=demo, **kw)


def check_secret(secret: str) -> None:
    """Raise AuthConfigError for a secret that is a known placeholder or too short to resist guessing."""
    if secret.strip().lower() in PLACEHOLDER_SECRETS:
        raise AuthConfigError(f"{SECRET_ENV} is the placeholder {secret!r}; set a random value (32+ bytes)")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise AuthConfigError(
            f"{SECRET_ENV} has {len(secret.encode())} bytes; use at least {MIN_SECRET_BYTES} random bytes "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the enterprise ids they may see."""

    login: str
    name: str
    role: Role
    enterprises: frozenset[str]
    scope: UserScope

    @property
    def organisation_level(self) -> str:
        """``enterprise``, ``park`` or ``county``: the level at which this caller acknowledges."""
        if self.role is Role.PARK_REGULATOR:
            return "park"
        if self.role is Role.COUNTY_REGULATOR:
            return "county"
        return "enterprise"


def allowed_enterprises(scope: UserScope, site: Site) -> frozenset[str]:
    """Enterprise ids of this site a scope covers: listed ones, all of its park, or all when its county matches."""
    every = frozenset(e.id for e in site.enterprises)
    park = site.file.park
    if scope.enterprises is not None:
        return every & frozenset(scope.enterprises)
    if scope.park is not None:
        return every if scope.park == park.id else frozenset()
    return every if scope.county is not None and scope.county == park.county else frozenset()


class LoginLimiter:
    """Failed logins per (login, address) in a sliding window; the next attempt waits once the limit is hit."""

    def __init__(self, clock: Clock, max_failures: int = 5, window_s: int = 900) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window_ms = window_s * 1000
        self._failures: dict[tuple[str, str], deque[int]] = {}
        self._lock = threading.Lock()

    def check(self, login: str, remote: str) -> None:
        """Raise LoginRateLimited when this pair has used up its failures."""
        now = self.clock.now_ms()
        with self._lock:
            times = self._prune((login.lower(), remote), now)
            if times is not None and len(times) >= self.max_failures:
                wait_ms = times[0] + self.window_ms - now
                raise LoginRateLimited(max(1, -(-wait_ms // 1000)))

    def failed(self, login: str, remote: str) -> None:
        """Count a failure."""
        with self._lock:
            self._failures.setdefault((login.lower(), remote), deque()).append(self.clock.now_ms())

    def succeeded(self, login: str, remote: str) -> None:
        """Forget the failures of this pair."""
        with self._lock:
            self._failures.pop((login.lower(), remote), None)

    def _prune(self, key: tuple[str, str], now: int) -> deque[int] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_ms:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times


class Auth:
    """Logins, tokens and scope for one site."""

    def __init__(self, users: UserStore, site: Site, settings: AuthSettings, clock: Clock | None = None) -> None:
        self.users = users
        self.site = site
        self.settings = settings
        self.clock = clock or SystemClock()  # wall time: token lifetimes are not replay time
        self.limiter = LoginLimiter(self.clock, settings.max_failures, settings.failure_window_s)

    def login(self, login: str, password: str, remote: str) -> tuple[str, Principal]:
        """A signed token and its principal; LoginRateLimited or LoginRefused otherwise."""
        self.limiter.check(login, remote)
        user = self.users.verify(login, password)
        if user is None:
            self.limiter.failed(login, remote)
            metrics.INPUT_REJECTED.labels("auth", "login_failed").inc()
            raise LoginRefused("wrong login or password")
        self.limiter.succeeded(login, remote)
        return self.issue(user), self.principal_of(user)

    def issue(self, user: User) -> str:
        """A JWT for this user, valid ``token_ttl_s``."""
        now_s = self.clock.now_ms() // 1000
        claims = {
            "iss": ISSUER,
            "sub": user.login,
            "role": user.role.value,
            "ver": user.token_version,
            "iat": now_s,
            "exp": now_s + self.settings.token_ttl_s,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self.settings.secret, algorithm=ALGORITHM)

    def authenticate(self, token: str | None) -> Principal:
        """The principal a token stands for, checked against the user as stored now; InvalidToken otherwise."""
        if not token:
            raise InvalidToken("not authenticated: log in at /api/auth/token and send 'Authorization: Bearer …'")
        try:
            # Expiry is checked below against our clock, so tests and PyJWT agree on 'now'.
            claims = jwt.decode(
                token,
                self.settings.secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["sub", "exp", "iat", "ver"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            metrics.INPUT_REJECTED.labels("auth", "bad_token").inc()
            raise InvalidToken(f"invalid token: {exc}") from None
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= self.clock.now_ms() // 1000:
            raise InvalidToken("token expired: log in again")
        user = self.users.get(str(claims["sub"]))
        stale = user is None or user.disabled or user.token_version != claims["ver"]
        if stale or user.role.value != claims.get("role"):
            raise InvalidToken("token no longer valid: the user was removed or changed; log in again")
        return self.principal_of(user)

    def principal_of(self, user: User) -> Principal:
        """The user with the enterprise ids their scope covers on this site."""
        return Principal(
            login=user.login,
            name=user.name,
            role=user.role,
            enterprises=allowed_enterprises(user.scope, self.site),
            scope=user.scope,
        )


def sync_site_users(
    users: UserStore, site: Site, *, demo: bool, now_ms: int, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Create or refresh the users the site file lists; plain-text passwords only in the demo. Returns logins."""
    env = os.environ if environ is None else environ
    known = {e.id for e in site.enterprises}
    done = []
    for i, spec in enumerate(site.file.users):
        where = f"{site.path}: users[{i}] ({spec.login})"
        unknown = sorted(set(spec.scope.enterprises or ()) - known)
        if unknown:
            raise UserError(f"{where}: scope names unknown enterprises {unknown}")
        if spec.password is not None and not demo:
            raise UserError(f"{where}: a plain-text password is for the demo only; use password_env")
        password = spec.password if spec.password is not None else env.get(spec.password_env or "")
        if not password:
            raise UserError(f"{where}: environment variable {spec.password_env} is not set")
        current = users.get(spec.login)
        if current is not None and users.verify(spec.login, password) is not None and (
            current.name,
            current.role,
            current.scope,
        ) == (spec.name, spec.role, spec.scope):
            done.append(spec.login)
            continue  # unchanged: keep its token version so sessions survive a restart
        users.add(spec.login, spec.name, spec.role, spec.scope, password, now_ms=now_ms, replace=True)
        done.append(spec.login)
    return done
