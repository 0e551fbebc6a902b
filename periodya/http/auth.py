"""Bearer authentication by route family (API.md, Authentication).

* /api/escrows*, /api/payouts*, /api/payees*: the platform backend's service token.
* /api/admin/**: a live admin session with role platform_admin (ops_viewer: GET only); the cron secret is
  accepted only on POST and GET /api/admin/ops/run/* (GET: Vercel Cron; runbook_routes refuses a session
  there). Admin sessions are checked by the verifier registered on the app. Without a bearer header, the
  ops console's session cookie is accepted here (and only here), with its CSRF check on state-changing
  calls (console_auth.py); a cookie is never the cron secret.
Secrets are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from periodya.http import boundary
from periodya.http.client_ip import request_client
from periodya.http.console_auth import SAFE_METHODS, cookie_session
from periodya.http.middleware import ACTOR, Handler, route_of
from periodya.http.problems import Forbidden, Unauthenticated


@dataclass(frozen=True)
class Principal:
    actor: str
    kind: str  # "service" | "cron" | "admin" | "viewer" (read-only) | "user"


SessionVerifier = Callable[[web.Request, str], Awaitable[Principal]]
SESSION_VERIFIER = web.AppKey("session_verifier", object)
SERVICE_TOKEN = web.AppKey("service_token", object)
CRON_SECRET = web.AppKey("cron_secret", object)
_PLATFORM = ("/api/escrows", "/api/payouts", "/api/payees")
PRINCIPAL = web.RequestKey("principal", Principal)


def bearer(request: web.Request) -> str | None:
    """The bearer token, or None when there is none. A token that is not printable ASCII (aiohttp hands
    non-UTF-8 header bytes over as surrogates) is no token we issued: Unauthenticated, never a crash."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    if not (token.isascii() and token.isprintable()):
        raise Unauthenticated("the bearer token is malformed")
    return token


def _matches(token: str, secret: object) -> bool:
    return isinstance(secret, str) and bool(secret) and hmac.compare_digest(token.encode(), secret.encode())


def _kind(request: web.Request) -> str:
    if request.path.startswith(_PLATFORM):
        return "service_token"
    if request.method == "POST" and request.path.startswith("/api/admin/ops/run/"):
        return "cron_secret_or_session"
    return "session"


async def authenticate(request: web.Request) -> Principal | None:
    """The request's principal (None outside the guarded families). A refusal leaves one rate-limited
    warning line (boundary.refused: kind, route, reason, remote address; never the token)."""
    try:
        return await _authenticate(request)
    except (Unauthenticated, Forbidden) as exc:
        boundary.refused(_kind(request), route=route_of(request), remote=request_client(request), reason=str(exc))
        raise


async def _authenticate(request: web.Request) -> Principal | None:
    path = request.path
    if path.startswith(_PLATFORM):
        token = bearer(request)
        if token is None or not _matches(token, request.app[SERVICE_TOKEN]):
            raise Unauthenticated("a valid service token is required")
        return Principal("service:platform", "service")
    if path.startswith("/api/admin/"):
        token = bearer(request)
        from_cookie = token is None
        if token is None:
            token = cookie_session(request)  # the console's cookie; 403 without its CSRF token
        if token is None:
            raise Unauthenticated("a bearer token is required")
        if not from_cookie and request.method in ("POST", "GET") and path.startswith(
                "/api/admin/ops/run/") and _matches(token, request.app[CRON_SECRET]):
            return Principal("cron", "cron")
        verifier = request.app.get(SESSION_VERIFIER)
        if verifier is None:
            raise Unauthenticated("admin sessions are not available")
        principal: Principal = await verifier(request, token)  # type: ignore[operator]
        if principal.kind == "viewer" and request.method in SAFE_METHODS:
            return principal
        if principal.kind != "admin":
            raise Forbidden("the platform_admin role is required")
        return principal
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    principal = await authenticate(request)
    if principal is not None:
        request[ACTOR] = principal.actor
        request[PRINCIPAL] = principal
        structlog.contextvars.bind_contextvars(actor=principal.actor)
    return await handler(request)
