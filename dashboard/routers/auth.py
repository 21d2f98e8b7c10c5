"""Login (OAuth2 password flow → JWT), who am I, and user administration for admins."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from dashboard.routers.deps import (
    AUTH_RESPONSES,
    AuditDep,
    AuthDep,
    ErrorOut,
    PrincipalDep,
    audit_action,
    remote_of,
    require_roles,
)
from tankwatch.auth import LoginRateLimited, LoginRefused
from tankwatch.site import Id, Role, UserScope
from tankwatch.stores.users import User, UserError

# The login route is open; everything else here is included behind authentication by the app.
login_router = APIRouter(tags=["auth"])
router = APIRouter(tags=["auth"])


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
    """Every user."""

    users: list[UserOut]


class UserIn(BaseModel):
    """A user to create or replace."""

    login: Id
    name: str = Field(min_length=1, max_length=200)
    role: Role
    scope: UserScope
    password: str = Field(min_length=8, max_length=200)
    replace: bool = False


def _user_out(u: User) -> UserOut:
    return UserOut(login=u.login, name=u.name, role=u.role, scope=u.scope, disabled=u.disabled, created_ms=u.created_ms)


@login_router.post(
    "/api/auth/token",
    response_model=TokenOut,
    responses={
        400: {"model": ErrorOut, "description": "A form body that cannot be parsed at all"},
        401: {"model": ErrorOut, "description": "Wrong login or password"},
        429: {"model": ErrorOut, "description": "Too many failed logins for this login from this address"},
    },
)
def token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], auth: AuthDep) -> TokenOut:
    """OAuth2 password flow: form fields ``username`` and ``password``; failed logins are limited per login+address."""
    remote = remote_of(request)
    journal = request.app.state.audit
    try:
        access, principal = auth.login(form.username, form.password, remote)
    except LoginRateLimited as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except LoginRefused:
        journal.record(
            actor=form.username[:64],
            action="auth.login_failed",
            target_kind="session",
            target_id=form.username[:200],
            remote=remote,
            ts_ms=auth.clock.now_ms(),
        )
        raise HTTPException(401, "wrong login or password", headers={"WWW-Authenticate": "Bearer"}) from None
    journal.record(
        actor=principal.login,
        role=principal.role.value,
        action="auth.login",
        target_kind="session",
        target_id=principal.login,
        remote=remote,
        ts_ms=auth.clock.now_ms(),
    )
    return TokenOut(
        access_token=access,
        token_type="bearer",
        expires_in=auth.settings.token_ttl_s,
        login=principal.login,
        name=principal.name,
        role=principal.role,
        enterprises=sorted(principal.enterprises),
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
    return UsersOut(users=[_user_out(u) for u in auth.users.list()])


@router.post(
    "/api/users",
    response_model=UserOut,
    status_code=201,
    responses={**AUTH_RESPONSES, 409: {"model": ErrorOut, "description": "Exists already, or role and scope clash"}},
    dependencies=[require_roles(Role.ADMIN)],
)
def add_user(request: Request, body: UserIn, auth: AuthDep, _audit: AuditDep) -> UserOut:
    """Create (or with ``replace`` overwrite) a user (admins only); audited."""
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
