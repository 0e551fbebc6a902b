"""Admin users: creation (a row for login plus an AdminUserCreated event for the audit log) and lookup."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from periodya.admin.passwords import check_new_password, hash_password_async
from periodya.domain.events import Event
from periodya.errors import PeriodyaError
from periodya.event_registry import REGISTRY
from periodya.eventstore import ANY, NO_STREAM, EventStore, StreamAppend
from periodya.eventstore.store import stream_lock
from periodya.handlers.unit_of_work import Meta

PLATFORM_ADMIN = "platform_admin"
OPS_VIEWER = "ops_viewer"
"""Read-only: may GET /api/admin/** (health, alerts, payouts, jobs, audit) and change nothing."""
MAX_EMAIL_LENGTH = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_ROLE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class InvalidAdminUser(PeriodyaError):
    code = "VALIDATION_FAILED"


class DuplicateEmail(PeriodyaError):
    code = "DUPLICATE_EMAIL"


@REGISTRY.register
class AdminUserCreated(Event):
    """An admin user was created. Never carries the password or its hash."""

    event_type = "AdminUserCreated"
    user_id: str
    email: str
    roles: tuple[str, ...]


@REGISTRY.register
class AdminSessionsRevoked(Event):
    """Every live session of an admin user was revoked (`periodya admin revoke-sessions`)."""

    event_type = "AdminSessionsRevoked"
    user_id: str
    email: str
    revoked: int


@REGISTRY.register
class AdminUserDisabled(Event):
    """An admin disabled a user; every live session of that user was revoked in the same transaction.
    The actor and the reason are in the event's metadata."""

    event_type = "AdminUserDisabled"
    user_id: str
    email: str
    sessions_revoked: int


@REGISTRY.register
class AdminUserEnabled(Event):
    """An admin re-enabled a disabled user (who must log in again: their sessions stay revoked)."""

    event_type = "AdminUserEnabled"
    user_id: str
    email: str


@REGISTRY.register
class AdminUserRoleChanged(Event):
    """An admin changed a user's console role (platform_admin or ops_viewer); effective on the next request."""

    event_type = "AdminUserRoleChanged"
    user_id: str
    email: str
    roles_before: tuple[str, ...]
    roles: tuple[str, ...]


@REGISTRY.register
class AdminPasswordReset(Event):
    """An admin set a new password for a user (never carried here); every session of the user was revoked."""

    event_type = "AdminPasswordReset"
    user_id: str
    email: str
    generated: bool
    sessions_revoked: int


@REGISTRY.register
class LoginThrottleUnlocked(Event):
    """An admin cleared the failed-login rows of an email and/or a client address (periodya/admin/throttle.py)."""

    event_type = "LoginThrottleUnlocked"
    email: str | None
    address: str | None
    cleared: int


class UnknownAdminUser(PeriodyaError):
    code = "NOT_FOUND"


@dataclass(frozen=True)
class AdminUser:
    user_id: str
    email: str
    password_hash: str
    roles: tuple[str, ...]
    disabled: bool

    @property
    def is_platform_admin(self) -> bool:
        return PLATFORM_ADMIN in self.roles and not self.disabled


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str) -> str:
    """The normalized email, or InvalidAdminUser when it cannot be an address."""
    email = normalize_email(email)
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise InvalidAdminUser(f"not a usable email address: {email[:80]!r}")
    return email


def check_roles(roles: Sequence[str]) -> tuple[str, ...]:
    bad = [r for r in roles if not _ROLE.match(r)]
    if bad:
        raise InvalidAdminUser(f"not a valid role name: {bad[0][:64]!r}")
    return tuple(dict.fromkeys(roles))


def stream(user_id: str) -> str:
    return f"admin-user-{user_id}"


async def create_user(store: EventStore, email: str, password: str, roles: Sequence[str] = (PLATFORM_ADMIN,),
                      *, meta: Meta) -> str:
    """Create an admin user and record AdminUserCreated in the same transaction; returns the user id.

    Raises WeakPassword, InvalidAdminUser, or DuplicateEmail (the unique email index decides, so two
    concurrent creations of one email cannot both succeed)."""
    email, roles = check_email(email), check_roles(roles)
    password_hash = await hash_password_async(check_new_password(password))
    user_id = f"usr_{uuid.uuid4().hex}"
    event = REGISTRY.to_new(AdminUserCreated(user_id=user_id, email=email, roles=roles), meta.as_metadata())
    async with store.pool.acquire() as conn, conn.transaction():
        try:
            await conn.execute(
                "INSERT INTO admin_users (user_id, email, password_hash, roles) VALUES ($1, $2, $3, $4)",
                user_id, email, password_hash, list(roles))
        except asyncpg.UniqueViolationError:
            raise DuplicateEmail(f"an admin user with email {email} already exists") from None
        await store.append([StreamAppend(stream(user_id), NO_STREAM, [event])], conn=conn)
    store.wake()
    return user_id


async def fetch_user_by_email(pool: asyncpg.Pool, email: str) -> AdminUser | None:
    row = await pool.fetchrow(
        "SELECT user_id, email, password_hash, roles, disabled FROM admin_users WHERE email = $1",
        normalize_email(email))
    if row is None:
        return None
    return AdminUser(row["user_id"], row["email"], row["password_hash"], tuple(row["roles"]), row["disabled"])


async def update_password_hash(pool: asyncpg.Pool, user_id: str, password_hash: str) -> None:
    await pool.execute("UPDATE admin_users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash)


async def revoke_sessions(store: EventStore, email: str, *, meta: Meta) -> tuple[str, int]:
    """Revoke every live session of the user with `email` and record AdminSessionsRevoked (with the
    actor) in the same transaction; returns (user id, sessions revoked). Unknown email: UnknownAdminUser."""
    from periodya.admin.sessions import revoke_all

    user = await fetch_user_by_email(store.pool, email)
    if user is None:
        raise UnknownAdminUser(f"no admin user with email {normalize_email(email)[:80]!r}")
    async with store.pool.acquire() as conn, conn.transaction():
        await store.lock(conn, [stream_lock(stream(user.user_id))])  # before the first write
        revoked = await revoke_all(conn, user.user_id)
        event = REGISTRY.to_new(AdminSessionsRevoked(user_id=user.user_id, email=user.email, revoked=revoked),
                                meta.as_metadata())
        await store.append([StreamAppend(stream(user.user_id), ANY, [event])], conn=conn)
    store.wake()
    return user.user_id, revoked
