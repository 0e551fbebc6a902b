"""GET /api/auth/me: who the bearer token's session belongs to (`periodya ops whoami`).

Outside /api/admin, so the auth middleware leaves it alone and it checks the token itself, like logout:
a missing, expired or revoked session (or a disabled user) is 401. Any live session answers, whatever its
roles, so a user without platform_admin can see why the admin routes refuse them.
"""

from __future__ import annotations

from aiohttp import web

from periodya.admin import sessions, users
from periodya.http.auth import bearer
from periodya.http.problems import Unauthenticated
from periodya.http.route_helpers import STORE, json

routes = web.RouteTableDef()
# One primary-key probe of each table, as the session check on every admin request.
_ME = """
SELECT u.user_id, u.email, u.roles, s.created_at, s.expires_at
  FROM admin_sessions s JOIN admin_users u ON u.user_id = s.user_id
 WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND NOT u.disabled"""


@routes.get("/api/auth/me")
async def me(request: web.Request) -> web.Response:
    token = bearer(request) or ""
    row = None
    if token and len(token) <= sessions.MAX_TOKEN_LENGTH:
        row = await request.app[STORE].pool.fetchrow(_ME, sessions.token_hash(token))
    if row is None:
        raise Unauthenticated("the session is invalid, expired or revoked")
    roles = list(row["roles"])
    return json({"userId": row["user_id"], "email": row["email"], "roles": roles,
                 "platformAdmin": users.PLATFORM_ADMIN in roles,
                 "sessionCreatedAt": row["created_at"].isoformat().replace("+00:00", "Z"),
                 "expiresAt": row["expires_at"].isoformat().replace("+00:00", "Z")})
