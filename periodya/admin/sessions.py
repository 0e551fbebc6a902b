"""Admin sessions: opaque bearer tokens, stored only as their sha256.

The token is `secrets.token_urlsafe(32)` (256 bits of randomness), so a plain, unsalted sha256 is
enough: it cannot be brute-forced, and it lets verification be one primary-key lookup.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from periodya.errors import ConfigError

DEFAULT_TTL = timedelta(hours=12)
TTL_ENV = "PERIODYA_SESSION_TTL_MINUTES"
DEFAULT_IDLE = timedelta(minutes=30)
IDLE_ENV = "PERIODYA_SESSION_IDLE_MINUTES"
TOUCH_EVERY = timedelta(minutes=1)
MAX_TOKEN_LENGTH = 256

# One round trip on the hot path of every admin request: the session and its user by primary keys, and
# last_seen_at bumped only when it is older than the touch interval (a minute, or a quarter of the idle
# timeout if that is shorter), so most requests write nothing. A session unused for longer than the idle
# timeout ($3) is not live; the touch interval is added so a session in use is never refused early.
# The UPDATE runs whether or not the outer SELECT reads it (data-modifying CTEs always execute).
_VERIFY = """
WITH live AS (
    SELECT s.token_hash, s.user_id, u.email, u.roles
      FROM admin_sessions s JOIN admin_users u ON u.user_id = s.user_id
     WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND NOT u.disabled
       AND s.last_seen_at > now() - $3::interval - $2::interval
), touched AS (
    UPDATE admin_sessions a SET last_seen_at = now()
      FROM live WHERE a.token_hash = live.token_hash AND a.last_seen_at < now() - $2::interval
)
SELECT user_id, email, roles FROM live"""


@dataclass(frozen=True)
class SessionUser:
    user_id: str
    email: str
    roles: tuple[str, ...]


def session_ttl_from_env(env: dict[str, str] | None = None) -> timedelta:
    """PERIODYA_SESSION_TTL_MINUTES: a session's whole life (default 12 h)."""
    return _minutes_from_env(TTL_ENV, DEFAULT_TTL, env)


def session_idle_from_env(env: dict[str, str] | None = None) -> timedelta:
    """PERIODYA_SESSION_IDLE_MINUTES: a session unused this long is refused (default 30)."""
    return _minutes_from_env(IDLE_ENV, DEFAULT_IDLE, env)


def _minutes_from_env(name: str, default: timedelta, env: dict[str, str] | None) -> timedelta:
    raw = (os.environ if env is None else env).get(name, "")
    if raw == "":
        return default
    try:
        minutes = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of minutes, got {raw!r}") from None
    if not 0 < minutes <= 60 * 24 * 30:
        raise ConfigError(f"{name} must be between 0 and 43200 minutes, got {raw!r}")
    return timedelta(minutes=minutes)


def touch_every(idle: timedelta) -> timedelta:
    return min(TOUCH_EVERY, idle / 4)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()  # any header bytes: never a crash


async def create_session(pool: asyncpg.Pool, user_id: str, ttl: timedelta = DEFAULT_TTL) -> tuple[str, datetime]:
    """A new session for `user_id`: (token, expires_at). Also drops the user's long-expired sessions."""
    token = secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM admin_sessions WHERE user_id = $1 AND expires_at < now() - interval '1 day'",
                           user_id)
        expires_at = await conn.fetchval(
            "INSERT INTO admin_sessions (token_hash, user_id, expires_at) VALUES ($1, $2, now() + $3::interval) "
            "RETURNING expires_at", token_hash(token), user_id, ttl)
    return token, expires_at


async def fetch_live_session(pool: asyncpg.Pool, token: str, idle: timedelta = DEFAULT_IDLE) -> SessionUser | None:
    """The user of a live session (not expired, not idle longer than `idle`, not revoked, user not
    disabled), or None."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = await pool.fetchrow(_VERIFY, token_hash(token), touch_every(idle), idle)
    return None if row is None else SessionUser(row["user_id"], row["email"], tuple(row["roles"]))


async def revoke_session(pool: asyncpg.Pool, token: str) -> str | None:
    """Revoke a live session at once; returns its user id, or None if it was not live."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    user_id: str | None = await pool.fetchval(
        "UPDATE admin_sessions SET revoked_at = now() "
        "WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING user_id", token_hash(token))
    return user_id


async def revoke_all(conn: asyncpg.Connection, user_id: str) -> int:
    """Revoke every live session of `user_id` at once; returns how many were live."""
    rows = await conn.fetch(
        "UPDATE admin_sessions SET revoked_at = now() "
        "WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING 1", user_id)
    return len(rows)
