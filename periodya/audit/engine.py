"""The rebuild engine: the ONE way the audit applies the log to projection tables outside the inline path.

`rebuild_into` builds a scratch schema (audit.scratch) from the log up to a position; `catch_up` applies
to it the events committed after a snapshot (the swap's last step, audit.swap). Both run the projections'
own apply functions (the live path's) over events read in (tx, seq) order, through one pipeline:

* Inside one snapshot every visible event is committed, so plain (tx, seq) order is commit order and
  no horizon filter is needed.
* The log is read in pages of `batch` events by a producer task: on a second, idle connection `reader`
  that imports the rebuild transaction's snapshot (pg_export_snapshot / SET TRANSACTION SNAPSHOT), one
  page ahead, so the server scans and sends page n + 1 while page n is applied; or, without a reader,
  on the rebuild's own connection, page by page in turn with the applies' statements.
* Pages are applied in batches of about `apply_batch` events (whole pages, in order): the apply
  functions take any batch in commit-safe order, and fewer, bigger batches mean fewer statements and
  fewer versions of the rows every batch updates (balances), which later lookups in this one long
  transaction must walk. The projections' applies of one batch run concurrently (SharedConnection).
* Secondary indexes of tables that are only diffed or counted and then rolled back are dropped
  (and those tables are UNLOGGED); tables to be kept (swap) get them back in one bulk build each.
* Python's cyclic garbage collector is paused while the engine runs (gc_paused).
All of these change how fast the tables are built, never what is in them.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg

from periodya.audit import scratch as scratch_schema
from periodya.audit.shared_connection import SharedConnection
from periodya.eventstore.model import Position
from periodya.eventstore.store import EVENT_COLUMNS, row_to_event
from periodya.projections import PROJECTIONS, Projection

APPLY_BATCH = 50_000
"""Events per apply call in a rebuild (several read pages). Each call updates a row touched in it once,
and in one long transaction every update leaves a row version that later lookups of that row walk
(balances: the same accounts in every batch). Fewer, bigger batches: fewer versions and statements."""
EVENTS_IN_ORDER = f"SELECT {EVENT_COLUMNS} FROM periodya.events {{where}} ORDER BY tx, seq"
_UP_TO = "WHERE (tx, seq) <= ($1::text::xid8, $2::bigint)"
_OpenCursor = Callable[[], Awaitable[Any]]
_FetchPage = Callable[[Any, int], Awaitable[list[Any]]]
_AFTER_SNAPSHOT = ("WHERE tx >= pg_snapshot_xmin($1::text::pg_snapshot) "
                   "AND NOT pg_visible_in_snapshot(tx, $1::text::pg_snapshot)")


def selected(names: Sequence[str] | None) -> dict[str, Projection]:
    """The projections named (None or ["all"]: every one), in the registry's (= inline apply) order."""
    if not names or list(names) == ["all"]:
        return dict(PROJECTIONS)
    unknown = [n for n in names if n not in PROJECTIONS]
    if unknown:
        raise ValueError(f"unknown projection(s) {unknown}; known: {', '.join(PROJECTIONS)}")
    return {n: PROJECTIONS[n] for n in names}


def tables_of(names: Sequence[str] | None) -> list[str]:
    """Every table of the selected projections, in the registry's (= inline apply) order."""
    return [t for module in selected(names).values() for t in module.TABLES]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a rebuild, and restore it afterwards (also on error).

    A rebuild allocates millions of short-lived, acyclic containers (the decoded events' dicts and
    lists) while a batch of them is alive, so the collector's generations fill quickly and it traverses
    the live pages again and again: measured at about a third of the rebuild's client CPU. Reference
    counting still frees every page as soon as it is applied; anything cyclic created meanwhile waits
    for the next collection after the rebuild. The engine runs in the CLI and in tests, not the server."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def rebuild_into(conn: asyncpg.Connection, scratch: str, names: Sequence[str] | None,
                       position: Position | None, *, reader: asyncpg.Connection | None = None,
                       keep_indexes: bool = False, batch: int = 5000, apply_batch: int | None = None,
                       unlogged: bool | None = None) -> int:
    """Inside the caller's REPEATABLE READ transaction on `conn`: build `scratch` from the log up to and
    including `position` in (tx, seq) order (None: all of it; START: none of it). With `reader` (idle,
    not in a transaction) the log is read on it, a page ahead, in the same snapshot. With `keep_indexes`,
    the secondary indexes are recreated. `unlogged` (default: not `keep_indexes`) builds UNLOGGED tables:
    no WAL for rows nobody keeps; tables to be kept are always logged. Returns the events replayed."""
    snapshot = str(await conn.fetchval("SELECT pg_export_snapshot()")) if reader is not None else None
    indexes = await scratch_schema.create(conn, scratch, secondary_indexes=False,
                                          unlogged=not keep_indexes and unlogged is not False)
    where, args = "", []
    if position is not None:
        where, args = _UP_TO, [str(position.tx), position.seq]
    count = await _run(conn, reader, snapshot, EVENTS_IN_ORDER.format(where=where), args, selected(names).values(),
                       batch, apply_batch)
    if keep_indexes:
        await scratch_schema.recreate(conn, indexes)
    return count


async def catch_up(conn: asyncpg.Connection, scratch: str, names: Sequence[str] | None, snapshot: str, *,
                   batch: int = 5000, apply_batch: int | None = None) -> int:
    """Inside the caller's transaction: apply to the tables of `scratch` (built by rebuild_into in
    `snapshot`, a pg_snapshot's text) every event committed after that snapshot and visible now, in
    (tx, seq) order, on `conn` alone. Returns the events applied."""
    await conn.execute(f"SET LOCAL search_path = {scratch_schema.checked(scratch)}, periodya")
    return await _run(conn, None, None, EVENTS_IN_ORDER.format(where=_AFTER_SNAPSHOT), [snapshot],
                      selected(names).values(), batch, apply_batch)


async def _run(conn: asyncpg.Connection, reader: asyncpg.Connection | None, snapshot: str | None, sql: str,
               args: list[Any], modules: Iterable[Projection], batch: int, apply_batch: int | None) -> int:
    # The apply functions' statements name tables unqualified. Prepared (and cached by asyncpg) under
    # another search_path, PostgreSQL re-analyses them on every execution: measured twice as slow.
    # So start and end with a fresh statement cache.
    await conn.reload_schema_state()
    try:
        with gc_paused():
            shared = SharedConnection(conn)
            per_apply = max(batch, apply_batch or APPLY_BATCH)
            if reader is None:
                return await _pipeline(shared, lambda: shared.cursor(sql, *args), shared.fetch_page, modules,
                                       batch, per_apply)
            async with reader.transaction(isolation="repeatable_read", readonly=True):
                await reader.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                await reader.execute("SET LOCAL statement_timeout = 0")
                return await _pipeline(shared, lambda: reader.cursor(sql, *args), _fetch, modules, batch, per_apply)
    finally:
        await conn.reload_schema_state()


async def _fetch(cursor: Any, size: int) -> list[Any]:
    return list(await cursor.fetch(size))


async def _pipeline(shared: SharedConnection, open_cursor: _OpenCursor, fetch: _FetchPage,
                    modules: Iterable[Projection], batch: int, apply_batch: int) -> int:
    # Room for a whole apply batch of pages: the reader keeps reading while a batch is applied.
    queue: asyncio.Queue[list[Any] | None] = asyncio.Queue(maxsize=apply_batch // batch + 1)
    producer = asyncio.create_task(_pages(open_cursor, fetch, batch, queue))
    count = 0
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
    return count


async def _pages(open_cursor: _OpenCursor, fetch: _FetchPage, batch: int,
                 queue: asyncio.Queue[list[Any] | None]) -> None:
    cursor = await open_cursor()
    while rows := await fetch(cursor, batch):
        await queue.put([row_to_event(r) for r in rows])
        if len(rows) < batch:
            break
    await queue.put(None)


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
