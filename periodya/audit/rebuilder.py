"""The audit's rebuild: projections.replay.rebuild_in's job (same scratch DDL, same apply functions, same
(tx, seq) order), arranged for speed on big logs.

* The log is read on a second connection that imports the rebuild transaction's snapshot
  (pg_export_snapshot / SET TRANSACTION SNAPSHOT), one page ahead: the server scans and sends page
  n + 1 while this process applies page n.
* Secondary indexes of the scratch tables (everything but primary keys and unique constraints, which the
  upserts need) are dropped before the rebuild and, when the tables are to be kept (swap), created again
  afterwards from their own definitions: one bulk build instead of one insertion per row.
* Pages are applied in batches of about APPLY_BATCH events (whole pages, in order): the apply functions
  take any batch in commit-safe order, and fewer, bigger batches mean fewer statements and fewer
  versions of the rows every batch updates (balances), which later lookups in this one long
  transaction must walk.
* Python's cyclic garbage collector is paused for the rebuild (gc_paused).
All of these change how fast the tables are built, never what is in them; the tests compare its result
with rebuild_in's (projections.replay.replay_and_diff).
"""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg

from periodya.db import projections_sql
from periodya.eventstore.model import Position
from periodya.eventstore.store import row_to_event
from periodya.projections import Projection
from periodya.projections.replay import EVENTS_IN_ORDER, selected

APPLY_BATCH = 50_000
"""Events per apply call in a rebuild (several read pages). Each call updates a row touched in it once,
and in one long transaction every update leaves a row version that later lookups of that row walk
(balances: the same accounts in every batch). Fewer, bigger batches: fewer versions and statements."""
_SECONDARY = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND NOT i.indisprimary
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"""


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a rebuild, and restore it afterwards (also on error).

    A rebuild allocates millions of short-lived, acyclic containers (the decoded events' dicts and
    lists) while a batch of them is alive, so the collector's generations fill quickly and it traverses
    the live pages again and again: measured at about a third of the rebuild's client CPU. Reference
    counting still frees every page as soon as it is applied; anything cyclic created meanwhile waits
    for the next collection after the rebuild. Only the audit's rebuild (a CLI process) runs this."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def create_scratch(conn: asyncpg.Connection, scratch: str, *, unlogged: bool = False) -> list[str]:
    """Create the scratch schema from schema.sql's projection DDL, minus its secondary indexes; returns
    their definitions (to recreate). search_path stays `scratch, periodya` for the transaction.
    `unlogged` makes the (still empty) tables UNLOGGED: only for a rebuild that is rolled back."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE; CREATE SCHEMA {scratch}")
    await conn.execute(f"SET LOCAL search_path = {scratch}, periodya")
    await conn.execute(projections_sql())
    secondary = await conn.fetch(_SECONDARY, scratch)
    for row in secondary:
        await conn.execute(f"DROP INDEX {row['name']}")
    if unlogged:
        for table in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", scratch):
            await conn.execute(f"ALTER TABLE {scratch}.{table['tablename']} SET UNLOGGED")
    return [row["definition"] for row in secondary]


async def _pages(reader: asyncpg.Connection, sql: str, args: list[Any], batch: int,
                 queue: asyncio.Queue[list[Any] | None]) -> None:
    cursor = await reader.cursor(sql, *args)
    while rows := await cursor.fetch(batch):
        await queue.put([row_to_event(r) for r in rows])
        if len(rows) < batch:
            break
    await queue.put(None)


async def rebuild_into(conn: asyncpg.Connection, reader: asyncpg.Connection, scratch: str,
                       names: Sequence[str] | None, position: Position | None, *, keep_indexes: bool = False,
                       batch: int = 5000, apply_batch: int | None = None, unlogged: bool | None = None) -> int:
    """Inside the caller's REPEATABLE READ transaction on `conn`: build `scratch` from the log up to
    `position` (None: all of it), reading on `reader` (idle, not in a transaction) in the same snapshot.
    With `keep_indexes`, the secondary indexes are recreated. The log is read in pages of `batch`
    events and applied in batches of about `apply_batch` (default APPLY_BATCH) events, whole pages.
    `unlogged` (default: not `keep_indexes`, i.e. tables that are diffed or counted, then rolled back,
    never swapped in) builds UNLOGGED tables: no WAL for rows nobody keeps. Tables to be kept (swap)
    are always logged. Returns the number of events replayed."""
    modules = selected(names).values()
    # The apply functions' statements name tables unqualified. Prepared (and cached by asyncpg) under
    # another search_path, PostgreSQL re-analyses them on every execution: measured twice as slow.
    # So start and end with a fresh statement cache.
    await conn.reload_schema_state()
    unlogged_tables = not keep_indexes and unlogged is not False  # tables to be swapped in stay logged
    try:
        with gc_paused():
            return await _rebuild(conn, reader, scratch, modules, position, keep_indexes, batch,
                                  max(batch, apply_batch or APPLY_BATCH), unlogged_tables)
    finally:
        await conn.reload_schema_state()


async def _rebuild(conn: asyncpg.Connection, reader: asyncpg.Connection, scratch: str, modules: Iterable[Projection],
                   position: Position | None, keep_indexes: bool, batch: int, apply_batch: int,
                   unlogged: bool) -> int:
    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
    indexes = await create_scratch(conn, scratch, unlogged=unlogged)
    where, args = "", []
    if position is not None:
        where, args = "WHERE (tx, seq) <= ($1::text::xid8, $2::bigint)", [str(position.tx), position.seq]
    # Room for a whole apply batch of pages: the reader keeps reading while a batch is applied.
    queue: asyncio.Queue[list[Any] | None] = asyncio.Queue(maxsize=apply_batch // batch + 1)
    count = 0
    async with reader.transaction(isolation="repeatable_read", readonly=True):
        await reader.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        await reader.execute("SET LOCAL statement_timeout = 0")
        producer = asyncio.create_task(_pages(reader, EVENTS_IN_ORDER.format(where=where), args, batch, queue))
        shared = SharedConnection(conn)
        try:
            pending: list[Any] = []
            while (page := await queue.get()) is not None:
                pending += page
                if len(pending) >= apply_batch:
                    count += await _apply(shared, modules, pending)
                    pending = []
            count += await _apply(shared, modules, pending)
            await producer
        finally:
            producer.cancel()
            # Wait for the reader to stop before its transaction ends: a ROLLBACK sent while its fetch
            # is still in flight fails ("another operation is in progress") and hides the apply's error.
            await asyncio.gather(producer, return_exceptions=True)
    if keep_indexes:
        for definition in indexes:
            await conn.execute(definition)
    return count


class SharedConnection:
    """One connection shared by concurrent apply calls, one statement at a time (FIFO).

    Each projection writes only its own tables (its TABLES), so the statements of different
    projections commute; each apply call still awaits its own statements in order. Running the
    projections' apply calls of a batch concurrently lets one compute its rows while the server
    executes another's statement. It implements projections.port.ProjectionConnection, every method an
    apply function may call (mypy checks it where the rebuild hands it to the apply functions); any
    other method of the connection is awaited under the same lock, so a method added to the port and not
    here still runs, one statement at a time, rather than failing the rebuild (issue 11: `executemany`
    was missing here)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._turn = asyncio.Lock()

    async def execute(self, query: str, *args: Any) -> Any:
        async with self._turn:
            return await self._conn.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._turn:
            return list(await self._conn.fetch(query, *args))

    async def copy_records_to_table(self, table_name: str, *, records: Any, columns: Sequence[str]) -> Any:
        async with self._turn:
            return await self._conn.copy_records_to_table(table_name, records=records, columns=columns)

    def __getattr__(self, name: str) -> Any:
        # Not `inspect.iscoroutinefunction`: a pool's connection proxy wraps its methods in plain
        # functions that return coroutines. An apply awaits every connection method it calls, so every
        # other callable is awaited here, under the same lock.
        attribute = getattr(self._conn, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        async def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
            async with self._turn:
                return await attribute(*args, **kwargs)
        return one_at_a_time


async def _apply(conn: SharedConnection, modules: Iterable[Projection], events: list[Any]) -> int:
    """Every projection's apply on one batch, concurrently (see SharedConnection). A failing one
    cancels the others (TaskGroup) and the error ends the rebuild; the caller rolls back."""
    if events:
        try:
            async with asyncio.TaskGroup() as group:
                for module in modules:
                    group.create_task(module.apply(conn, events))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the apply's own error, as a sequential rebuild raises it
    return len(events)
