"""Swap rebuilt projection tables in for the live ones, blocking writers only for the swap itself.

Given a committed scratch schema rebuilt from the log in snapshot S (audit.replay), one short
transaction:
1. takes ACCESS EXCLUSIVE locks on the live tables, in the order the inline path writes them. Command
   transactions that already wrote to a live table hold it until they commit, so once the locks are
   ours every transaction that touched the live views has committed;
2. applies to the scratch tables, with the rebuild engine's catch-up (audit.engine.catch_up: the same
   apply functions), every event committed after S (visible now, not visible in S), in (tx, seq) order.
   A writer that appended events but has not yet reached the projection tables is still uncommitted: it
   is invisible here and, once we commit, its own inline apply writes into the swapped-in tables
   (PostgreSQL resolves the table name again after the lock wait, and prepared statements are
   re-planned), so its events land exactly once;
3. moves the live tables to the `replay_retired` schema (kept for inspection until the next swap) and
   the scratch tables into `periodya`. ALTER TABLE ... SET SCHEMA carries indexes and constraints along,
   and the scratch tables were created from the same DDL (schema.sql), so names, indexes and
   constraints are the live ones.

Deadlocks: a command may hold one projection table (read or written) while it waits for another that
we have locked. The lock wait therefore has a timeout shorter than the server's deadlock_timeout, so
it is always this transaction that gives up (releasing everything at once); it then retries after a
short pause. Writers wait at most that timeout per attempt, and otherwise only for the swap itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from periodya.audit import scratch as scratch_schema
from periodya.audit.engine import catch_up, tables_of
from periodya.audit.points import AuditError

RETIRED = "replay_retired"


class SwapFailed(AuditError):
    code = "SWAP_FAILED"


async def _lock_timeout_ms(conn: asyncpg.Connection) -> int:
    deadlock_ms = int(await conn.fetchval("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'"))
    return max(5, min(200, deadlock_ms // 2))


async def _swap_once(conn: asyncpg.Connection, scratch: str, names: Sequence[str] | None, snapshot: str,
                     lock_ms: int) -> int:
    tables = tables_of(names)
    await conn.execute(f"SET LOCAL lock_timeout = '{lock_ms}ms'")
    await conn.execute("SET LOCAL statement_timeout = 0")
    # Why ACCESS EXCLUSIVE: readers too must not see the moment between the two renames.
    await conn.execute(f"LOCK TABLE {', '.join(f'periodya.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE")
    await conn.execute("SET LOCAL lock_timeout = 0")
    caught_up = await catch_up(conn, scratch, names, snapshot)
    await scratch_schema.fresh(conn, RETIRED)
    for table in tables:
        await conn.execute(f"ALTER TABLE periodya.{table} SET SCHEMA {RETIRED}")
        await conn.execute(f"ALTER TABLE {scratch}.{table} SET SCHEMA periodya")
    await scratch_schema.drop(conn, scratch)  # the tables of projections not swapped
    return caught_up


async def swap_in(pool: asyncpg.Pool, scratch: str, names: Sequence[str] | None, snapshot: str, *,
                  attempts: int = 100) -> int:
    """Swap the committed scratch tables of `names` in for the live ones; returns the events caught up."""
    for attempt in range(1, attempts + 1):
        async with pool.acquire() as conn:
            lock_ms = await _lock_timeout_ms(conn)
            try:
                async with conn.transaction():
                    return await _swap_once(conn, scratch, names, snapshot, lock_ms)
            except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
                await asyncio.sleep(min(0.5, 0.01 * attempt))
    raise SwapFailed(f"could not lock the live projection tables in {attempts} attempts; nothing was swapped "
                     f"(the rebuilt tables remain in schema {scratch})")
