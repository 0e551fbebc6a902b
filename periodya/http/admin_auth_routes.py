"""/api/auth/login and /api/auth/logout, and the session verifier behind every /api/admin/** request.

/api/auth/* is outside /api/admin, so the auth middleware leaves it alone: logout checks its token here.
Logs name the user (never the password or the token); the request id is already bound by the middleware.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated

import asyncpg
from aiohttp import web
from pydantic import Field, StrictStr

from periodya.admin import passwords, sessions, throttle, users
from periodya.admin.sessions import DEFAULT_TTL, session_idle_from_env, session_ttl_from_env
from periodya.http import boundary, schemas
from periodya.http.auth import Principal, bearer
from periodya.http.client_ip import request_client
from periodya.http.problems import Unauthenticated
from periodya.http.route_helpers import STORE, json
from periodya.logging import get_logger

__all__ = ["SESSION_IDLE", "SESSION_TTL", "open_session", "routes", "session_idle_from_env", "session_ttl_from_env",
           "verify_session"]

SESSION_TTL = web.AppKey("admin_session_ttl", timedelta)
SESSION_IDLE = web.AppKey("admin_session_idle", timedelta)
BAD_CREDENTIALS = "invalid email or password"
BAD_SESSION = "the session is invalid, expired or revoked"
routes = web.RouteTableDef()
log = get_logger("periodya.admin")


class Login(schemas.Body):
    email: Annotated[StrictStr, Field(min_length=3, max_length=users.MAX_EMAIL_LENGTH)]
    password: Annotated[StrictStr, Field(min_length=1, max_length=passwords.MAX_LENGTH)]


def _pool(request: web.Request) -> asyncpg.Pool:
    return request.app[STORE].pool


async def verify_session(request: web.Request, token: str) -> Principal:
    """auth.SESSION_VERIFIER: the Principal of a live session, or Unauthenticated.

    A user with ops_viewer (and not platform_admin) gets kind "viewer", which the auth middleware lets read
    (GET) and nothing else; any other user gets kind "user", which it answers with 403."""
    user = await sessions.fetch_live_session(_pool(request), token,
                                             request.app.get(SESSION_IDLE, sessions.DEFAULT_IDLE))
    if user is None:
        raise Unauthenticated(BAD_SESSION)
    if users.PLATFORM_ADMIN in user.roles:
        return Principal(actor=f"admin:{user.email}", kind="admin")
    if users.OPS_VIEWER in user.roles:
        return Principal(actor=f"viewer:{user.email}", kind="viewer")
    return Principal(actor=f"user:{user.email}", kind="user")


@routes.post("/api/auth/login")
async def login(request: web.Request) -> web.Response:
    token, expires_at = await open_session(request)
    return json({"token": token, "expiresAt": expires_at.isoformat().replace("+00:00", "Z")})


async def open_session(request: web.Request) -> tuple[str, datetime]:
    """Check the Login body (throttled, argon2) and open a session: (token, expires_at). Shared by
    /api/auth/login and the ops console's login (which puts the token in a cookie instead)."""
    body, _ = await schemas.parse(request, Login)
    pool, email = _pool(request), users.normalize_email(body.email)
    remote = request_client(request)
    try:
        attempt = await throttle.begin_attempt(pool, email, remote)
    except throttle.TooManyAttempts as exc:
        log.warning("login_throttled", email=email, remote=remote, retry_after=exc.retry_after)
        raise
    if attempt.delay:  # many failures for this email from anywhere: slow down, never refuse
        log.warning("login_slowed", email=email, remote=remote, delay=attempt.delay)
        await asyncio.sleep(attempt.delay)
    user = await users.fetch_user_by_email(pool, email)
    # Always one full argon2 verification (a dummy hash for unknown emails): equal timing either way.
    ok, new_hash = await passwords.verify_password_async(user.password_hash if user else None, body.password)
    if user is None or not ok or user.disabled:
        await throttle.failed(pool, attempt)
        reason = "unknown_email" if user is None else "wrong_password" if not ok else "disabled"
        log.warning("login_failed", email=email, remote=remote, reason=reason)
        raise Unauthenticated(BAD_CREDENTIALS)
    await throttle.succeeded(pool, attempt)
    if new_hash is not None:
        await users.update_password_hash(pool, user.user_id, new_hash)
    token, expires_at = await sessions.create_session(pool, user.user_id, request.app.get(SESSION_TTL, DEFAULT_TTL))
    log.info("login_succeeded", user_id=user.user_id, email=email, remote=remote, rehashed=new_hash is not None)
    return token, expires_at


@routes.post("/api/auth/logout")
async def logout(request: web.Request) -> web.Response:
    token = bearer(request)
    user_id = await sessions.revoke_session(_pool(request), token or "")
    if user_id is None:
        boundary.refused("session", route="/api/auth/logout", remote=request_client(request),
                         reason="missing" if token is None else "not_live")
        raise Unauthenticated(BAD_SESSION)
    log.info("logout", user_id=user_id)
    return web.Response(status=204)
