"""Admin user management by another admin: list, disable, enable, change the console role, reset the password.

Every change is one transaction: the admin_users row, the sessions it revokes and its event (actor and
reason in the event's metadata, from Meta) commit together or not at all. All changes take one
transaction-scoped advisory lock first, so the guard rails are checked against a stable set of admins:
two admins demoting or disabling each other at the same moment cannot both succeed and leave none.

Guard rails (409, typed errors below): an admin cannot disable or demote themselves (SELF_CHANGE_REFUSED),
and nobody can disable or demote the last active platform_admin (LAST_ACTIVE_ADMIN). A change that would
change nothing (disable a disabled user, grant the role held) is a no-op: no event, `changed` false.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from periodya.admin.passwords import check_new_password, hash_password_async
from periodya.admin.sessions import revoke_all
from periodya.admin.users import (
    OPS_VIEWER,
    PLATFORM_ADMIN,
    AdminPasswordReset,
    AdminUserDisabled,
    AdminUserEnabled,
    AdminUserRoleChanged,
    InvalidAdminUser,
    UnknownAdminUser,
    check_email,
    stream,
)
from periodya.domain.errors import InvalidState, NotFound
from periodya.domain.events import Event
from periodya.event_registry import REGISTRY
from periodya.eventstore import ANY, EventStore, StreamAppend
from periodya.eventstore.hashing import lock_key
from periodya.eventstore.store import stream_lock
from periodya.handlers.unit_of_work import Meta

CONSOLE_ROLES = (PLATFORM_ADMIN, OPS_VIEWER)
GENERATED_LENGTH = 24
"""Characters of a generated one-time password (token_urlsafe: about 6 bits each, 144 bits in all)."""
USER_ID = re.compile(r"usr_[0-9a-f]{32}")
_LOCK = lock_key("admin-users:guard")
_LIST = """
SELECT u.user_id, u.email, u.roles, u.disabled, u.created_at,
       max(s.created_at) AS last_login_at, max(s.last_seen_at) AS last_seen_at,
       count(s.token_hash) FILTER (WHERE s.revoked_at IS NULL AND s.expires_at > now()) AS live_sessions
  FROM admin_users u LEFT JOIN admin_sessions s ON s.user_id = u.user_id
 GROUP BY u.user_id ORDER BY u.email"""


class NoSuchUser(NotFound, UnknownAdminUser):
    """404 NOT_FOUND: no admin user with that id or email."""

    code = "NOT_FOUND"


class SelfChangeRefused(InvalidState):
    code = "SELF_CHANGE_REFUSED"

    def __init__(self, email: str, command: str) -> None:
        super().__init__(f"admin user {email}", "the caller", command,
                         "an admin cannot disable or demote themselves; ask another admin")


class LastActiveAdmin(InvalidState):
    code = "LAST_ACTIVE_ADMIN"

    def __init__(self, email: str, command: str) -> None:
        super().__init__(f"admin user {email}", "the last active platform_admin", command,
                         "at least one active platform_admin must remain; promote another user first")


@dataclass(frozen=True)
class Change:
    """The user after a change, whether anything changed, and (reset-password only) what the caller sees once."""

    user: dict[str, Any]
    changed: bool
    sessions_revoked: int = 0
    generated_password: str | None = None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _view(row: asyncpg.Record) -> dict[str, Any]:
    return {"userId": row["user_id"], "email": row["email"], "roles": list(row["roles"]),
            "disabled": row["disabled"], "createdAt": _iso(row["created_at"]),
            "lastLoginAt": _iso(row["last_login_at"]), "lastSeenAt": _iso(row["last_seen_at"]),
            "liveSessions": row["live_sessions"]}


async def list_users(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every admin user by email, with the last login (newest session) and last use of any session."""
    return [_view(row) for row in await pool.fetch(_LIST)]


async def user_view(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(_LIST.replace("GROUP BY", "WHERE u.user_id = $1 GROUP BY"), user_id)
    if row is None:
        raise NoSuchUser(f"no admin user {user_id!r}")
    return _view(row)


def check_user_ref(ref: str) -> tuple[str, str]:
    """("user_id" | "email", value) for a path's user reference; InvalidAdminUser (400) if it can be neither."""
    if not ref.isprintable():  # NUL or an unpaired surrogate: no text column can hold it
        raise InvalidAdminUser("a user reference must be printable text")
    if USER_ID.fullmatch(ref):
        return "user_id", ref
    return "email", check_email(ref)


async def resolve_user_id(pool: asyncpg.Pool, ref: str) -> str:
    """The user id `ref` (user id or email) names, or NoSuchUser (404). The change re-reads it under lock."""
    column, value = check_user_ref(ref)
    user_id: str | None = await pool.fetchval(f"SELECT user_id FROM admin_users WHERE {column} = $1", value)
    if user_id is None:
        raise NoSuchUser(f"no admin user {value[:80]!r}")
    return user_id


async def _target(store: EventStore, conn: asyncpg.Connection, ref: str) -> asyncpg.Record:
    """The user `ref` names, its row locked; the user's stream is locked FIRST (DESIGN.md, "lock before you
    write"): a row lock, like a write, gives the transaction its id, so every change of one user then gets
    its id in commit order, its stream's versions are in (tx, seq) order, and replay and export see no gap."""
    column, value = check_user_ref(ref)
    user_id = await conn.fetchval(f"SELECT user_id FROM admin_users WHERE {column} = $1", value)
    if user_id is not None:
        await store.lock(conn, [stream_lock(stream(user_id))])
    row = None if user_id is None else await conn.fetchrow(
        "SELECT user_id, email, roles, disabled FROM admin_users WHERE user_id = $1 FOR UPDATE", user_id)
    if row is None:
        raise NoSuchUser(f"no admin user {value[:80]!r}")
    return row


async def _other_active_admins(conn: asyncpg.Connection, user_id: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM admin_users WHERE $1 = ANY(roles) AND NOT disabled AND user_id <> $2",
        PLATFORM_ADMIN, user_id)
    return count


async def _guard(conn: asyncpg.Connection, target: asyncpg.Record, actor_email: str | None, command: str) -> None:
    """Refuse taking platform_admin away (disable or demote) from the caller or from the last active admin."""
    if actor_email is not None and target["email"] == actor_email:
        raise SelfChangeRefused(target["email"], command)
    if PLATFORM_ADMIN in target["roles"] and not target["disabled"] \
            and await _other_active_admins(conn, target["user_id"]) == 0:
        raise LastActiveAdmin(target["email"], command)


async def _record(store: EventStore, conn: asyncpg.Connection, user_id: str, event: Event, meta: Meta) -> None:
    await store.append([StreamAppend(stream(user_id), ANY, [REGISTRY.to_new(event, meta.as_metadata())])], conn=conn)


async def set_disabled(store: EventStore, ref: str, disabled: bool, *, actor_email: str | None,
                       meta: Meta) -> Change:
    """Disable (revoking every session at once) or re-enable the user `ref` (user id or email)."""
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        target = await _target(store, conn, ref)
        if target["disabled"] == disabled:
            return Change(await user_view(conn, target["user_id"]), changed=False)
        revoked = 0
        if disabled:
            await _guard(conn, target, actor_email, "disable")
            revoked = await revoke_all(conn, target["user_id"])
            event: Event = AdminUserDisabled(user_id=target["user_id"], email=target["email"],
                                             sessions_revoked=revoked)
        else:
            event = AdminUserEnabled(user_id=target["user_id"], email=target["email"])
        await conn.execute("UPDATE admin_users SET disabled = $2 WHERE user_id = $1", target["user_id"], disabled)
        await _record(store, conn, target["user_id"], event, meta)
        view = await user_view(conn, target["user_id"])
    store.wake()
    return Change(view, changed=True, sessions_revoked=revoked)


async def set_role(store: EventStore, ref: str, role: str, *, actor_email: str | None, meta: Meta) -> Change:
    """Make `role` (platform_admin or ops_viewer) the user's one console role; other roles are kept."""
    if role not in CONSOLE_ROLES:
        raise ValueError(f"role must be one of {CONSOLE_ROLES}")  # the route validates first
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        target = await _target(store, conn, ref)
        before = tuple(target["roles"])
        roles = (role, *(r for r in before if r not in CONSOLE_ROLES))
        if roles == before:
            return Change(await user_view(conn, target["user_id"]), changed=False)
        if role != PLATFORM_ADMIN and PLATFORM_ADMIN in before:
            await _guard(conn, target, actor_email, f"change the role to {role}")
        await conn.execute("UPDATE admin_users SET roles = $2 WHERE user_id = $1", target["user_id"], list(roles))
        await _record(store, conn, target["user_id"], AdminUserRoleChanged(
            user_id=target["user_id"], email=target["email"], roles_before=before, roles=roles), meta)
        view = await user_view(conn, target["user_id"])
    store.wake()
    return Change(view, changed=True)


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_LENGTH)[:GENERATED_LENGTH]


async def reset_password(store: EventStore, ref: str, password: str | None, *, meta: Meta) -> Change:
    """Set `password` (or a generated one-time password, returned once in the Change) under the rules of
    `periodya admin create-user`, and revoke every session of the user in the same transaction."""
    generated = password is None
    new = check_new_password(generate_password() if password is None else password)
    password_hash = await hash_password_async(new)  # before the transaction: argon2 takes a while
    async with store.pool.acquire() as conn, conn.transaction():
        target = await _target(store, conn, ref)
        await conn.execute("UPDATE admin_users SET password_hash = $2 WHERE user_id = $1",
                           target["user_id"], password_hash)
        revoked = await revoke_all(conn, target["user_id"])
        await _record(store, conn, target["user_id"], AdminPasswordReset(
            user_id=target["user_id"], email=target["email"], generated=generated, sessions_revoked=revoked), meta)
        view = await user_view(conn, target["user_id"])
    store.wake()
    return Change(view, changed=True, sessions_revoked=revoked, generated_password=new if generated else None)
