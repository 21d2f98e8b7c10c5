"""Authentication and scope: OAuth2 password logins issuing JWTs, login rate limits, who may see which enterprise."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import jwt

from tankwatch import metrics
from tankwatch.clock import Clock, SystemClock
from tankwatch.config import Site
from tankwatch.site import LoginLimits, Role, UserScope
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
    """Too many failed logins for this login from this address (``per="login"``) or from this address at all."""

    def __init__(self, retry_after_s: int, per: str = "login") -> None:
        self.retry_after_s = retry_after_s
        self.per = per
        where = "for this login from your address" if per == "login" else "from your address"
        super().__init__(f"too many failed logins {where}; try again in {retry_after_s} s")


class InvalidToken(Exception):
    """A token that is missing, malformed, expired, or whose user no longer exists or changed."""


@dataclass(frozen=True)
class AuthSettings:
    """Token secret and lifetimes; ``from_env`` refuses placeholder secrets outside the demo."""

    secret: str
    token_ttl_s: int = 8 * 3600
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


@dataclass(slots=True)
class _Failures:
    """Failed logins of one key: how many in the window, the last one, and until when the next must wait."""

    count: int = 0
    last_ms: int = 0
    wait_until_ms: int = 0


class FailureBook:
    """Failures per key, least recently failed first; at most ``max_entries`` kept, each forgotten after the window."""

    def __init__(self, max_entries: int, window_ms: int) -> None:
        self.max_entries = max_entries
        self.window_ms = window_ms
        self._entries: OrderedDict[Hashable, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now_ms: int) -> _Failures | None:
        """The failures of ``key`` still in the window, or None."""
        self._expire(now_ms)
        return self._entries.get(key)

    def fail(self, key: Hashable, now_ms: int, free: int, first_delay_ms: int, max_delay_ms: int) -> None:
        """Count a failure; past ``free`` failures the next attempt waits, doubling per failure up to the cap."""
        self._expire(now_ms)
        entry = self._entries.pop(key, None) or _Failures()
        entry.count += 1
        entry.last_ms = now_ms
        if entry.count >= free:
            doublings = min(entry.count - free, 32)
            entry.wait_until_ms = now_ms + min(max_delay_ms, first_delay_ms << doublings)
        self._entries[key] = entry  # now the most recent
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        """Drop the failures of ``key``."""
        self._entries.pop(key, None)

    def _expire(self, now_ms: int) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.last_ms > now_ms - self.window_ms:
                return
            self._entries.popitem(last=False)


class LoginLimiter:
    """Progressive delays after failed logins, per (login, address) and per address across logins.

    Nobody is locked out: past the free failures each attempt waits (1 s, 2 s, 4 s … up to ``max_delay_s``), so an
    attacker sharing an operator's address can slow the operator down by at most that much, never shut them out.
    Memory is bounded: at most ``max_tracked`` entries per book, each forgotten ``window_s`` after its last failure.
    """

    def __init__(self, clock: Clock, limits: LoginLimits | None = None) -> None:
        self.clock = clock
        self.limits = limits or LoginLimits()
        window_ms = int(self.limits.window_s * 1000)
        self.pairs = FailureBook(self.limits.max_tracked, window_ms)
        self.addresses = FailureBook(self.limits.max_tracked, window_ms)
        self._lock = threading.Lock()

    def check(self, login: str, remote: str) -> None:
        """Raise LoginRateLimited while this login from this address, or this address at all, must wait."""
        now = self.clock.now_ms()
        with self._lock:
            for book, key, per in ((self.pairs, _pair(login, remote), "login"), (self.addresses, remote, "address")):
                entry = book.get(key, now)
                if entry is not None and entry.wait_until_ms > now:
                    raise LoginRateLimited(max(1, -(-(entry.wait_until_ms - now) // 1000)), per)

    def failed(self, login: str, remote: str) -> None:
        """Count a failure against the pair and the address."""
        now, lim = self.clock.now_ms(), self.limits
        first, cap = int(lim.first_delay_s * 1000), int(lim.max_delay_s * 1000)
        with self._lock:
            self.pairs.fail(_pair(login, remote), now, lim.free_failures_per_login, first, cap)
            self.addresses.fail(remote, now, lim.free_failures_per_address, first, cap)

    def succeeded(self, login: str, remote: str) -> None:
        """Forget the failures of this pair (the address keeps its count: spraying goes on counting)."""
        with self._lock:
            self.pairs.forget(_pair(login, remote))


def _pair(login: str, remote: str) -> tuple[str, str]:
    return login.lower(), remote


class Auth:
    """Logins, tokens and scope for one site."""

    def __init__(self, users: UserStore, site: Site, settings: AuthSettings, clock: Clock | None = None) -> None:
        self.users = users
        self.site = site
        self.settings = settings
        self.clock = clock or SystemClock()  # wall time: token lifetimes are not replay time
        self.limiter = LoginLimiter(self.clock, site.file.security.login)

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


def scope_problem(scope: UserScope, site: Site) -> str | None:
    """Why a scope cannot be given on this site (enterprise or park ids it does not have), or None when it can.

    County names are not checked: a county scope is resolved against the park's county and may name another county
    on purpose (a regulator of a tier above sees nothing here until the names match).
    """
    if scope.enterprises is not None:
        unknown = sorted(set(scope.enterprises) - {e.id for e in site.enterprises})
        if unknown:
            return f"scope names unknown enterprises {unknown}"
    if scope.park is not None and scope.park != site.file.park.id:
        return f"scope names park {scope.park!r}, but this site is park {site.file.park.id!r}"
    return None


def sync_site_users(
    users: UserStore, site: Site, *, demo: bool, now_ms: int, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Create or refresh the users the site file lists; plain-text passwords only in the demo. Returns logins."""
    env = os.environ if environ is None else environ
    done = []
    for i, spec in enumerate(site.file.users):
        where = f"{site.path}: users[{i}] ({spec.login})"
        problem = scope_problem(spec.scope, site)
        if problem:
            raise UserError(f"{where}: {problem}")
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
