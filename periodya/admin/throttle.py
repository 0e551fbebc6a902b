"""Login throttling in the database, so the limits hold across every server process.

Three sliding windows count failed logins:
* per (email tried, client address): MAX_FAILURES_PER_EMAIL, then that address is refused for that email;
* per client address: MAX_FAILURES_PER_REMOTE, then that address is refused for every email;
* per email across all addresses: past SLOWDOWN_AFTER failures each attempt for it waits a little longer
  (`slowdown`), capped at MAX_DELAY. It is only a slowdown, never a refusal: a stranger's failures from
  elsewhere must not lock the real admin out (issue 13), while online guessing stays slow (and argon2's
  small thread pool bounds the guesses per second of the whole service).
The client address is the peer's, or the one a trusted proxy forwarded (`periodya.http.client_ip`). The protocol is
"record first, then count": every attempt inserts its row (committed) BEFORE counting, so of N
concurrent attempts the last to insert sees all N rows and no burst can slip more than the limit
past the check. A throttled attempt deletes its row (it must not extend the lockout), a successful one
deletes its row (it was no failure), a failed one leaves it to count. A crash in between leaves the row:
it counts as a failure, which errs on the safe side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from periodya.errors import PeriodyaError
from periodya.event_registry import REGISTRY
from periodya.eventstore import ANY, EventStore, StreamAppend
from periodya.eventstore.store import stream_lock
from periodya.handlers.unit_of_work import Meta

MAX_FAILURES_PER_EMAIL = 5
"""Per email AND client address."""
MAX_FAILURES_PER_REMOTE = 20
SLOWDOWN_AFTER = 10
"""Failures for one email (any address) in the window before its attempts are slowed down."""
BASE_DELAY = 0.25
MAX_DELAY = 8.0
WINDOW = timedelta(minutes=15)
UNLOCK_STREAM = "admin-login-throttle"
"""The stream of LoginThrottleUnlocked events."""

# The moment each key's limit-th most recent other row leaves the window (NULL: not at the limit).
_LIMITED_UNTIL = """
SELECT greatest(
    (SELECT failed_at FROM login_failures
      WHERE email = $1 AND remote_addr = $2 AND attempt_id <> $3 AND failed_at > now() - $4::interval
      ORDER BY failed_at DESC OFFSET $5 LIMIT 1),
    (SELECT failed_at FROM login_failures
      WHERE remote_addr = $2 AND attempt_id <> $3 AND failed_at > now() - $4::interval
      ORDER BY failed_at DESC OFFSET $6 LIMIT 1)
) + $4::interval - now()"""


_EMAIL_FAILURES = """
SELECT count(*) FROM (SELECT 1 FROM login_failures
                       WHERE email = $1 AND attempt_id <> $2 AND failed_at > now() - $3::interval LIMIT 64) f"""


def slowdown(failures: int) -> float:
    """Seconds an attempt for an email waits, given that email's failures (any address) in the window:
    none up to SLOWDOWN_AFTER, then doubling from BASE_DELAY, capped at MAX_DELAY."""
    if failures < SLOWDOWN_AFTER:
        return 0.0
    return float(min(MAX_DELAY, BASE_DELAY * 2 ** min(failures - SLOWDOWN_AFTER, 16)))


class TooManyAttempts(PeriodyaError):
    """Too many failed logins for this email from this address, or from this address; retry after
    `retry_after` seconds."""

    code = "TOO_MANY_ATTEMPTS"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed login attempts; retry after {retry_after} seconds")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Attempt:
    attempt_id: int
    email: str
    remote_addr: str
    delay: float = 0.0
    """Seconds the caller waits before answering (the per-email slowdown)."""


async def begin_attempt(pool: asyncpg.Pool, email: str, remote_addr: str) -> Attempt:
    """Record a login attempt, then refuse it with TooManyAttempts if a limit is already reached; otherwise
    the attempt carries the per-email slowdown the caller must wait."""
    attempt_id = await pool.fetchval(
        "INSERT INTO login_failures (email, remote_addr) VALUES ($1, $2) RETURNING attempt_id", email, remote_addr)
    wait: timedelta | None = await pool.fetchval(
        _LIMITED_UNTIL, email, remote_addr, attempt_id, WINDOW,
        MAX_FAILURES_PER_EMAIL - 1, MAX_FAILURES_PER_REMOTE - 1)
    if wait is not None:
        await _forget(pool, attempt_id)
        raise TooManyAttempts(max(1, math.ceil(wait.total_seconds())))
    failures = await pool.fetchval(_EMAIL_FAILURES, email, attempt_id, WINDOW)
    return Attempt(attempt_id, email, remote_addr, slowdown(failures))


async def succeeded(pool: asyncpg.Pool, attempt: Attempt) -> None:
    await _forget(pool, attempt.attempt_id)


async def failed(pool: asyncpg.Pool, attempt: Attempt) -> None:
    """Keep the attempt's row as a failure, and prune rows that have left the window (any key)."""
    await pool.execute("DELETE FROM login_failures WHERE failed_at < now() - $1::interval", WINDOW)


async def _forget(pool: asyncpg.Pool, attempt_id: int) -> None:
    await pool.execute("DELETE FROM login_failures WHERE attempt_id = $1", attempt_id)


async def unlock(store: EventStore, email: str | None, address: str | None, *, meta: Meta) -> int:
    """Clear failed-login rows and record LoginThrottleUnlocked (actor and reason in its metadata) in the
    same transaction; returns how many rows were cleared. Email alone: that email from every address;
    address alone: every email from that address; both: that email from that address. The caller
    normalizes both (lower-case email, canonical address) as begin_attempt's callers do."""
    from periodya.admin.users import LoginThrottleUnlocked  # users imports nothing from here; keep it so

    if email is None and address is None:
        raise ValueError("unlock needs an email or an address")
    async with store.pool.acquire() as conn, conn.transaction():
        await store.lock(conn, [stream_lock(UNLOCK_STREAM)])  # before the first write
        cleared = len(await conn.fetch(
            "DELETE FROM login_failures WHERE ($1::text IS NULL OR email = $1) "
            "AND ($2::text IS NULL OR remote_addr = $2) RETURNING 1", email, address))
        event = REGISTRY.to_new(LoginThrottleUnlocked(email=email, address=address, cleared=cleared),
                                meta.as_metadata())
        await store.append([StreamAppend(UNLOCK_STREAM, ANY, [event])], conn=conn)
    store.wake()
    return cleared
