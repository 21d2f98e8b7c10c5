"""Login (OAuth2 password flow → JWT), who am I, and user administration for admins."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from dashboard.password_slots import PasswordChecksBusy
from dashboard.routers.deps import (
    AUTH_RESPONSES,
    TOKEN_URL,
    AuditDep,
    AuthDep,
    ErrorOut,
    PrincipalDep,
    audit_action,
    remote_of,
    require_roles,
)
from tankwatch import metrics
from tankwatch.auth import Auth, LoginRateLimited, LoginRefused, scope_problem
from tankwatch.site import Id, Role, UserScope
from tankwatch.stores.users import MIN_PASSWORD, ROLE_SCOPES, User, UserError

# The login route is open; everything else here is included behind authentication by the app.
login_router = APIRouter(tags=["auth"])
router = APIRouter(tags=["auth"])

TOKEN_PATH = TOKEN_URL
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1: token replies are never cached


class TokenOut(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: Literal["bearer"]
    expires_in: int
    login: str
    name: str
    role: Role
    enterprises: list[str]


class MeOut(BaseModel):
    """The caller and what they may see."""

    login: str
    name: str
    role: Role
    scope: UserScope
    enterprises: list[str]


class UserOut(BaseModel):
    """A user (never the password)."""

    login: str
    name: str
    role: Role
    scope: UserScope
    disabled: bool
    created_ms: int


class UsersOut(BaseModel):
    """Every user, and which kinds of scope each role may hold."""

    users: list[UserOut]
    role_scopes: dict[Role, list[Literal["enterprises", "park", "county"]]]


class UserIn(BaseModel):
    """A user to create or replace."""

    login: Id
    name: str = Field(min_length=1, max_length=200)
    role: Role
    scope: UserScope
    password: str = Field(min_length=8, max_length=200)
    replace: bool = False


class UserPatch(BaseModel):
    """What to change of a user: a new scope keeps their sessions (open websockets follow it); a new role ends
    them; disabling refuses their tokens and logins until enabled again."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    scope: UserScope | None = None
    disabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> UserPatch:
        if all(v is None for v in (self.name, self.role, self.scope, self.disabled)):
            raise ValueError("give at least one of name, role, scope, disabled")
        return self


class PasswordIn(BaseModel):
    """A new password set by an admin; the user's tokens stop working."""

    password: str = Field(min_length=MIN_PASSWORD, max_length=200)


class PasswordChangeIn(BaseModel):
    """The caller's own password change: the current one, then the new one."""

    current: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=MIN_PASSWORD, max_length=200)


def _user_out(u: User) -> UserOut:
    return UserOut(login=u.login, name=u.name, role=u.role, scope=u.scope, disabled=u.disabled, created_ms=u.created_ms)


@login_router.post(
    TOKEN_PATH,
    response_model=TokenOut,
    responses={
        400: {"model": ErrorOut, "description": "A form body that cannot be parsed at all"},
        401: {"model": ErrorOut, "description": "Wrong login or password"},
        413: {"model": ErrorOut, "description": "A body over the size limit"},
        429: {"model": ErrorOut, "description": "Failed logins from this address (for this login, or any): wait"},
        503: {"model": ErrorOut, "description": "Too many logins being checked at once: try again shortly"},
    },
)
async def token(
    request: Request,
    response: Response,
    auth: AuthDep,
    username: Annotated[str, Form(min_length=1)],
    password: Annotated[str, Form(min_length=1)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,  # OAuth2: "password" or absent
) -> TokenOut:
    """OAuth2 password flow (form fields ``username``, ``password``); failed logins slow down per login+address
    and per address, and only a few passwords are checked at once."""
    limits = auth.site.file.security.login
    too_long = [
        {"type": "string_too_long", "loc": ("body", field), "msg": f"String should have at most {most} characters"}
        for field, value, most in (("username", username, limits.max_login_chars),
                                   ("password", password, limits.max_password_chars))
        if len(value) > most
    ]
    if too_long:
        raise RequestValidationError(too_long)  # before any hashing or limiter entry
    remote = remote_of(request)
    try:
        auth.limiter.check(username, remote)  # before queueing for a slot: a throttled caller costs nothing
        async with request.app.state.password_slots.slot():
            access, principal = await run_in_threadpool(auth.login, username, password, remote)
    except LoginRateLimited as exc:
        metrics.INPUT_REJECTED.labels("auth", "login_blocked").inc()
        detail = {"per": exc.per, "retry_after_s": exc.retry_after_s}
        await _journal_login(request, auth, "auth.login_blocked", username, remote, detail=detail)
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except PasswordChecksBusy as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except LoginRefused:
        await _journal_login(request, auth, "auth.login_failed", username, remote)
        raise HTTPException(401, "wrong login or password", headers={"WWW-Authenticate": "Bearer"}) from None
    await _journal_login(request, auth, "auth.login", principal.login, remote, role=principal.role.value)
    response.headers.update(NO_STORE)
    return TokenOut(
        access_token=access,
        token_type="bearer",
        expires_in=auth.settings.token_ttl_s,
        login=principal.login,
        name=principal.name,
        role=principal.role,
        enterprises=sorted(principal.enterprises),
    )


async def _journal_login(
    request: Request, auth: Auth, action: str, login: str, remote: str, *, role: str | None = None,
    detail: dict | None = None,
) -> None:
    """Journal a login attempt; the journal sanitises what was typed as the actor."""
    await run_in_threadpool(
        request.app.state.audit.record,
        actor=login,
        role=role,
        action=action,
        target_kind="session",
        target_id=login,
        remote=remote,
        detail=detail,
        ts_ms=auth.clock.now_ms(),
    )


@router.get("/api/auth/me", response_model=MeOut, responses=AUTH_RESPONSES)
def me(principal: PrincipalDep) -> MeOut:
    """The caller: login, name, role, scope and the enterprise ids it covers."""
    return MeOut(
        login=principal.login,
        name=principal.name,
        role=principal.role,
        scope=principal.scope,
        enterprises=sorted(principal.enterprises),
    )


@router.get("/api/users", response_model=UsersOut, responses=AUTH_RESPONSES, dependencies=[require_roles(Role.ADMIN)])
def list_users(auth: AuthDep) -> UsersOut:
    """Every user (admins only)."""
    return UsersOut(
        users=[_user_out(u) for u in auth.users.list()],
        role_scopes={role: sorted(kinds) for role, kinds in ROLE_SCOPES.items()},
    )


@router.post(
    "/api/users",
    response_model=UserOut,
    status_code=201,
    responses={**AUTH_RESPONSES, 409: {"model": ErrorOut, "description": "Exists already, or role and scope clash"}},
    dependencies=[require_roles(Role.ADMIN)],
)
def add_user(request: Request, body: UserIn, auth: AuthDep, _audit: AuditDep) -> UserOut:
    """Create (or with ``replace`` overwrite) a user (admins only); audited."""
    _check_scope(auth, body.scope)
    try:
        now, b = auth.clock.now_ms(), body
        user = auth.users.add(b.login, b.name, b.role, b.scope, b.password, now_ms=now, replace=b.replace)
    except UserError as exc:
        raise HTTPException(409, str(exc)) from None
    audit_action(
        request,
        "user.replace" if body.replace else "user.add",
        "user",
        user.login,
        detail={"name": user.name, "role": user.role.value, "scope": user.scope.model_dump(exclude_none=True)},
    )
    return _user_out(user)


@router.delete(
    "/api/users/{login}",
    status_code=204,
    responses={
        **AUTH_RESPONSES,
        404: {"model": ErrorOut, "description": "No such user"},
        409: {"model": ErrorOut, "description": "An admin removing their own user"},
    },
    dependencies=[require_roles(Role.ADMIN)],
)
def remove_user(
    request: Request, login: Annotated[str, Path(max_length=64)], principal: PrincipalDep, auth: AuthDep
) -> None:
    """Remove a user (admins only, not themselves); audited."""
    if login == principal.login:
        raise HTTPException(409, "an admin cannot remove their own user")
    if not auth.users.remove(login):
        raise HTTPException(404, f"no user {login!r}")
    audit_action(request, "user.remove", "user", login)


@router.patch(
    "/api/users/{login}",
    response_model=UserOut,
    responses={
        **AUTH_RESPONSES,
        404: {"model": ErrorOut, "description": "No such user"},
        409: {"model": ErrorOut, "description": "Role and scope clash, or an admin disabling or demoting themselves"},
    },
    dependencies=[require_roles(Role.ADMIN)],
)
def update_user(
    request: Request, login: Annotated[str, Path(max_length=64)], body: UserPatch, principal: PrincipalDep,
    auth: AuthDep,
) -> UserOut:
    """Rename, re-role, re-scope, disable or enable a user (admins only; not their own role or access); audited
    with what changed."""
    if body.scope is not None:
        _check_scope(auth, body.scope)
    before = auth.users.get(login)
    if before is None:
        raise HTTPException(404, f"no user {login!r}")
    if login == principal.login and (body.disabled or (body.role is not None and body.role != before.role)):
        raise HTTPException(409, "an admin cannot disable their own user or change their own role")
    try:
        user = auth.users.update(login, name=body.name, role=body.role, scope=body.scope, disabled=body.disabled)
    except UserError as exc:
        raise HTTPException(409, str(exc)) from None
    old, new = _user_out(before).model_dump(mode="json"), _user_out(user).model_dump(mode="json")
    changed = {k: {"from": old[k], "to": new[k]} for k in ("name", "role", "scope", "disabled") if old[k] != new[k]}
    audit_action(request, "user.update", "user", login, detail=changed)
    return _user_out(user)


@router.post(
    "/api/users/{login}/password",
    status_code=204,
    responses={**AUTH_RESPONSES, 404: {"model": ErrorOut, "description": "No such user"}},
    dependencies=[require_roles(Role.ADMIN)],
)
async def reset_password(
    request: Request, login: Annotated[str, Path(max_length=64)], body: PasswordIn, auth: AuthDep
) -> None:
    """Set a user's password (admins only): their tokens stop working and they log in with the new one; audited
    (never the password)."""
    if auth.users.get(login) is None:
        raise HTTPException(404, f"no user {login!r}")
    async with request.app.state.password_slots.slot():  # hashing costs what a login costs
        await run_in_threadpool(auth.users.set_password, login, body.password)
    await run_in_threadpool(audit_action, request, "user.password_reset", "user", login)


@router.post(
    "/api/auth/password",
    response_model=TokenOut,
    responses={
        **AUTH_RESPONSES,
        429: {"model": ErrorOut, "description": "Failed attempts from this address: wait"},
        503: {"model": ErrorOut, "description": "Too many passwords being checked at once: try again shortly"},
    },
)
async def change_own_password(
    request: Request, response: Response, body: PasswordChangeIn, principal: PrincipalDep, auth: AuthDep
) -> TokenOut:
    """Change the caller's own password, checking the current one as a login would (same limits); the old
    tokens stop working and the reply carries a new one."""
    remote = remote_of(request)
    try:
        auth.limiter.check(principal.login, remote)
        async with request.app.state.password_slots.slot():
            await run_in_threadpool(auth.login, principal.login, body.current, remote)
            await run_in_threadpool(auth.users.set_password, principal.login, body.password)
    except LoginRateLimited as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except PasswordChecksBusy as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except LoginRefused:
        await run_in_threadpool(audit_action, request, "auth.password_change_failed", "session", principal.login)
        raise HTTPException(403, "the current password is wrong") from None
    await run_in_threadpool(audit_action, request, "auth.password_change", "session", principal.login)
    user = auth.users.get(principal.login)
    assert user is not None
    response.headers.update(NO_STORE)
    return TokenOut(
        access_token=auth.issue(user),
        token_type="bearer",
        expires_in=auth.settings.token_ttl_s,
        login=user.login,
        name=user.name,
        role=user.role,
        enterprises=sorted(principal.enterprises),
    )


def _check_scope(auth: Auth, scope: UserScope) -> None:
    """422 naming ``scope`` when it names enterprises or a park this site does not have."""
    problem = scope_problem(scope, auth.site)
    if problem:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "scope"), "msg": problem}])
