"""The ops console: a small single-page app under /ops/ (assets in periodya/http/console/), and its login.

The pages speak only the public HTTP API (/api/admin/**), authenticated by the session cookie set here
(console_auth.py has the cookie and CSRF rules). The cookie is HttpOnly and SameSite=Strict, and Secure
unless the request is on localhost (or arrives over https, directly or as a proxy reports it). Every page
and asset is served with a strict Content-Security-Policy: scripts and styles from this origin only (no
inline script), no framing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from periodya.admin import sessions, users
from periodya.http.admin_auth_routes import SESSION_IDLE, open_session
from periodya.http.console_auth import CSRF_COOKIE, SESSION_COOKIE, check_csrf, csrf_for
from periodya.http.problems import Unauthenticated
from periodya.http.route_helpers import STORE, json
from periodya.logging import get_logger

ASSETS = Path(__file__).parent / "console"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_FILES = {p.name: p for p in ASSETS.iterdir() if p.suffix in _TYPES}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_LOCAL = {"localhost", "127.0.0.1", "::1", "[::1]"}
routes = web.RouteTableDef()
log = get_logger("periodya.console")


def _harden(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _asset(name: str) -> web.StreamResponse:
    path = _FILES.get(name)
    if path is None:
        raise web.HTTPNotFound(text=f"no console asset {name!r}")
    return _harden(web.Response(body=path.read_bytes(), content_type=_TYPES[path.suffix], charset="utf-8"))


def secure_cookies(request: web.Request) -> bool:
    """Secure unless plainly on localhost over http: a remote host, https, or an https proxy in front."""
    host = request.url.host or ""
    forwarded_https = request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    return request.secure or forwarded_https or host not in _LOCAL


@routes.get("/ops/")
async def index(_request: web.Request) -> web.StreamResponse:
    return _asset("index.html")


@routes.get("/ops/assets/{name}")
async def asset(request: web.Request) -> web.StreamResponse:
    return _asset(request.match_info["name"])


def _me(user: sessions.SessionUser, token: str) -> dict[str, object]:
    return {"email": user.email, "roles": list(user.roles), "platformAdmin": users.PLATFORM_ADMIN in user.roles,
            "csrfToken": csrf_for(token)}


@routes.post("/ops/session")
async def login(request: web.Request) -> web.StreamResponse:
    """The console's login: the same checks as /api/auth/login, the token set as an HttpOnly cookie."""
    token, expires_at = await open_session(request)
    user = await _live(request, token)
    if user is None:  # revoked or disabled between the two statements
        raise Unauthenticated("the session is invalid, expired or revoked")
    response = json(_me(user, token))
    max_age = max(1, int((expires_at - datetime.now(UTC)).total_seconds()))
    secure = secure_cookies(request)
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True, secure=secure,
                        samesite="Strict")
    response.set_cookie(CSRF_COOKIE, csrf_for(token), max_age=max_age, path="/", httponly=False, secure=secure,
                        samesite="Strict")
    return _harden(response)


async def _live(request: web.Request, token: str) -> sessions.SessionUser | None:
    return await sessions.fetch_live_session(request.app[STORE].pool, token,
                                             request.app.get(SESSION_IDLE, sessions.DEFAULT_IDLE))


async def _cookie_user(request: web.Request) -> tuple[str, sessions.SessionUser]:
    token = request.cookies.get(SESSION_COOKIE, "")
    user = await _live(request, token) if token else None
    if user is None:
        raise Unauthenticated("not signed in, or the session expired")
    return token, user


@routes.get("/ops/session")
async def whoami(request: web.Request) -> web.StreamResponse:
    token, user = await _cookie_user(request)
    return _harden(json(_me(user, token)))


@routes.post("/ops/session/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """Revoke the cookie's session on the server and clear both cookies (CSRF-checked like any POST)."""
    token, user = await _cookie_user(request)
    check_csrf(request, token)
    await sessions.revoke_session(request.app[STORE].pool, token)
    log.info("console_logout", user_id=user.user_id)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")
    return _harden(response)
