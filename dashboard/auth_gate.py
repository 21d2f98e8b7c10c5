"""The bearer token of protected paths is checked before the app reads anything of the request body."""

from __future__ import annotations

from collections.abc import Collection

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tankwatch import metrics
from tankwatch.auth import Auth, InvalidToken


class AuthGate:
    """Pure ASGI middleware: requests to ``protected_prefixes`` (except ``open_paths``) need a valid bearer token;
    without one they are answered 401 before the body is read or parsed. The principal found is left in
    ``request.state.principal`` for the route's own authentication dependency."""

    def __init__(self, app: ASGIApp, protected_prefixes: tuple[str, ...], open_paths: Collection[str]) -> None:
        self.app = app
        self.protected_prefixes = protected_prefixes
        self.open_paths = frozenset(open_paths)

    def protects(self, path: str) -> bool:
        """Whether requests to ``path`` need a token."""
        return path.startswith(self.protected_prefixes) and path not in self.open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.protects(scope["path"]):
            await self.app(scope, receive, send)
            return
        auth: Auth = scope["app"].state.auth
        try:
            # in the event loop: a JWT check and one indexed SELECT, cheaper than a thread hop
            principal = auth.authenticate(_bearer_token(scope))
        except InvalidToken as exc:
            metrics.INPUT_REJECTED.labels("dashboard", "unauthenticated").inc()
            response = JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None
