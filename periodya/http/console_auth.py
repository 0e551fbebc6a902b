"""The ops console's session cookie, turned into the admin session token for /api/admin/** only.

The browser console (periodya/http/console_routes.py) keeps the session token in an HttpOnly,
SameSite=Strict cookie. A cookie is sent by the browser on its own, so every state-changing request that
authenticates by it must also carry `X-CSRF-Token`: the token derived from the session (readable by the
console's script from a non-HttpOnly cookie, never by another origin). Deriving it from the session means
a cookie planted by a sibling host cannot be paired with a matching token. A missing or wrong token is
403 and nothing runs. auth.py uses this for /api/admin/** alone: never for the platform's service-token
routes, and never as the cron secret.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from periodya.http.problems import Forbidden

SESSION_COOKIE = "periodya_session"
CSRF_COOKIE = "periodya_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_for(session_token: str) -> str:
    """The CSRF token of a session: a one-way digest, so it reveals nothing of the session token."""
    return hashlib.sha256(b"periodya-console-csrf:" + session_token.encode()).hexdigest()


def check_csrf(request: web.Request, session_token: str) -> None:
    """Forbidden unless a state-changing request echoes the session's CSRF token in X-CSRF-Token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent.encode(), csrf_for(session_token).encode()):
        raise Forbidden(f"a cookie-authenticated {request.method} needs a valid {CSRF_HEADER} header")


def cookie_session(request: web.Request) -> str | None:
    """The session token from the console's cookie (CSRF-checked), or None when there is no cookie."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    check_csrf(request, token)
    return token
