"""Login throttling in the database, so the limits hold across every server process.

Per email tried and per remote address, a sliding window counts failed logins. The protocol is
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

MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_REMOTE = 20
WINDOW = timedelta(minutes=15)

# The moment each key's limit-th most recent other row leaves the window (NULL: not at the limit).
_LIMITED_UNTIL = """
SELECT greatest(
    (SELECT failed_at FROM login_failures
      WHERE email = $1 AND attempt_id <> $3 AND failed_at > now() - $4::interval
      ORDER BY failed_at DESC OFFSET $5 LIMIT 1),
    (SELECT failed_at FROM login_failures
      WHERE remote_addr = $2 AND attempt_id <> $3 AND failed_at > now() - $4::interval
      ORDER BY failed_at DESC OFFSET $6 LIMIT 1)
) + $4::interval - now()"""


class TooManyAttempts(PeriodyaError):
    """Too many failed logins for this email or from this address; retry after `retry_after` seconds."""

    code = "TOO_MANY_ATTEMPTS"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed login attempts; retry after {retry_after} seconds")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Attempt:
    attempt_id: int
    email: str
    remote_addr: str


async def begin_attempt(pool: asyncpg.Pool, email: str, remote_addr: str) -> Attempt:
    """Record a login attempt, then refuse it with TooManyAttempts if a limit is already reached."""
    attempt_id = await pool.fetchval(
        "INSERT INTO login_failures (email, remote_addr) VALUES ($1, $2) RETURNING attempt_id", email, remote_addr)
    wait: timedelta | None = await pool.fetchval(
        _LIMITED_UNTIL, email, remote_addr, attempt_id, WINDOW,
        MAX_FAILURES_PER_EMAIL - 1, MAX_FAILURES_PER_REMOTE - 1)
    if wait is not None:
        await _forget(pool, attempt_id)
        raise TooManyAttempts(max(1, math.ceil(wait.total_seconds())))
    return Attempt(attempt_id, email, remote_addr)


async def succeeded(pool: asyncpg.Pool, attempt: Attempt) -> None:
    await _forget(pool, attempt.attempt_id)


async def failed(pool: asyncpg.Pool, attempt: Attempt) -> None:
    """Keep the attempt's row as a failure, and prune rows that have left the window (any key)."""
    await pool.execute("DELETE FROM login_failures WHERE failed_at < now() - $1::interval", WINDOW)


async def _forget(pool: asyncpg.Pool, attempt_id: int) -> None:
    await pool.execute("DELETE FROM login_failures WHERE attempt_id = $1", attempt_id)
