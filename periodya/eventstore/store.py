"""The PostgreSQL event store: atomic multi-stream append, stream reads and commit-order-safe reads.

Concurrency model (DESIGN.md, "The event store"):
* Writers are not serialised globally. Each append takes transaction-scoped advisory locks on every
  stream (and every extra resource key) it touches, in sorted order, before its first write, then
  checks expected versions. `UNIQUE (stream_id, stream_version)` is the backstop.
* "Read all" returns only events whose writing transaction id is below the snapshot horizon
  `pg_snapshot_xmin(pg_current_snapshot())`, ordered by (tx, seq). Every transaction below the horizon
  has finished, so nothing can later appear behind a reader's checkpoint.
* Every command appends inside its own transaction (`conn=`, together with its projections); an
  append without a connection is one pooled connection and one transaction of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import asyncpg

from periodya import metrics
from periodya.errors import ConcurrencyConflict
from periodya.eventstore.hashing import lock_key
from periodya.eventstore.model import START, Position, RecordedEvent, StreamAppend
from periodya.eventstore.prepared import PreparedAppend, prepare
from periodya.eventstore.prepared import stream_lock as stream_lock  # re-exported: callers lock streams by it

# The columns row_to_event reads, for every query that returns events (store, replay, audit history).
EVENT_COLUMNS = "seq, tx::text::bigint AS tx, stream_id, stream_version, event_type, data, metadata, recorded_at"
_APPEND = "SELECT seq, tx, stream_id, stream_version, recorded_at FROM append_events($1, $2, $3, $4, $5, $6, $7)"
READ_STREAMS = (f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1::text[]) "
                "ORDER BY stream_id, stream_version")
_READ_ALL = f"""
    SELECT {EVENT_COLUMNS} FROM events
     WHERE (tx, seq) > ($1::text::xid8, $2::bigint)
       AND tx < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY tx, seq LIMIT $3"""
CONFLICT_SQLSTATE = "PE409"
NOTIFY_CHANNEL = "periodya_events"
# How long wake() gathers commits into one NOTIFY. Each NOTIFY is a transaction of its own; at 2 ms a
# busy process sent one for nearly every commit. 20 ms bounds it at 50 per second per process, and a
# follower wakes at most 20 ms later than it could (it polls anyway).
WAKE_COALESCE_S = 0.02


def row_to_event(row: asyncpg.Record) -> RecordedEvent:
    # RecordedEvent is a plain frozen dataclass (no __post_init__): its fields are set in declaration
    # order as __init__ would, without the per-field object.__setattr__. Replay converts every row.
    event = object.__new__(RecordedEvent)
    event.__dict__.update(seq=row["seq"], tx=row["tx"], stream_id=row["stream_id"],
                          stream_version=row["stream_version"], type=row["event_type"], data=row["data"],
                          metadata=row["metadata"], recorded_at=row["recorded_at"])
    return event


def _conflict_from(exc: asyncpg.PostgresError) -> ConcurrencyConflict:
    detail = getattr(exc, "detail", None) or "||"
    stream, expected, actual = [*detail.split("|"), "", "", ""][:3]
    return ConcurrencyConflict(stream, int(expected or -1), int(actual or -1))


async def _append_rows(conn: asyncpg.Connection, prepared: PreparedAppend) -> list[RecordedEvent]:
    """One append_events call; a version conflict (or the UNIQUE backstop) becomes ConcurrencyConflict."""
    try:
        rows = await conn.fetch(_APPEND, *prepared.args())
    except asyncpg.UniqueViolationError:
        raise ConcurrencyConflict(",".join(prepared.streams), -1, -1) from None
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == CONFLICT_SQLSTATE:
            raise _conflict_from(exc) from None
        raise
    return prepared.records(rows)


class EventStore:
    """Append and read events. Methods take an optional connection so that a caller can append and
    update projections in one transaction; without one, a pooled connection is used."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._wake_pending = False
        self._wake_tasks: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def _conn(self, conn: asyncpg.Connection | None) -> AsyncIterator[asyncpg.Connection]:
        if conn is not None:
            yield conn
        else:
            async with self.pool.acquire() as acquired:
                yield acquired

    async def lock(self, conn: asyncpg.Connection, names: Iterable[str]) -> None:
        """Take transaction-scoped advisory locks on `names` in sorted key order.

        Call this FIRST in a command transaction, before reading the state the command decides on and
        before any write: advisory locks assign no transaction id, so every transaction sharing a key
        gets its id (at its first write) in the order it commits. Re-entrant within a transaction.
        """
        keys = sorted({lock_key(n) for n in names})
        if keys:
            await conn.execute("SELECT lock_keys($1)", keys)

    async def append(self, appends: Sequence[StreamAppend], *, conn: asyncpg.Connection | None = None,
                     lock_names: Iterable[str] = ()) -> list[RecordedEvent]:
        """Append to every stream in `appends` atomically, or raise ConcurrencyConflict and write nothing.

        `lock_names` are extra resources (e.g. ledger accounts) locked together with the streams,
        before the first write. Returns the recorded events in append order.

        This is the hot path of every command, and the client's CPU competes with the database's on a
        small machine: one pass over the events builds the arguments, and the result rows are read by
        position. The database does the rest in one round trip (schema.sql `append_events`).
        """
        prepared = prepare(appends, lock_names)
        if conn is not None:  # the command path: no context manager on the hot path
            recorded = await _append_rows(conn, prepared)
        else:
            async with self.pool.acquire() as acquired:
                recorded = await _append_rows(acquired, prepared)
        metrics.appended(len(recorded))  # counted when appended (a caller's transaction may still roll back)
        return recorded

    async def read_stream(self, stream_id: str, *, after_version: int = 0,
                          conn: asyncpg.Connection | None = None) -> list[RecordedEvent]:
        async with self._conn(conn) as c:
            rows = await c.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 "
                "ORDER BY stream_version", stream_id, after_version)
        return [row_to_event(r) for r in rows]

    async def read_streams(self, stream_ids: Sequence[str], *,
                           conn: asyncpg.Connection | None = None) -> list[RecordedEvent]:
        """Every event of `stream_ids` in one query, ordered by stream, then version."""
        async with self._conn(conn) as c:
            rows = await c.fetch(READ_STREAMS, list(stream_ids))
        return [row_to_event(r) for r in rows]

    async def read_all(self, after: Position = START, limit: int = 1000, *,
                       conn: asyncpg.Connection | None = None) -> list[RecordedEvent]:
        """One page of events after `after`, in commit-safe (tx, seq) order, below the snapshot horizon."""
        async with self._conn(conn) as c:
            rows = await c.fetch(_READ_ALL, str(after.tx), after.seq, limit)
        return [row_to_event(r) for r in rows]

    def wake(self) -> None:
        """Schedule one NOTIFY for followers, coalescing bursts of commits into a single hint.

        Sent after commit from its own tiny transaction rather than inside the writer's: NOTIFY in a
        transaction serialises commits on the notification queue lock, a global bottleneck."""
        if self._wake_pending:
            return
        self._wake_pending = True
        task = asyncio.get_running_loop().create_task(self._send_wake())
        self._wake_tasks.add(task)
        task.add_done_callback(self._wake_tasks.discard)

    async def _send_wake(self) -> None:
        await asyncio.sleep(WAKE_COALESCE_S)
        self._wake_pending = False
        try:
            await self.notify()
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            pass  # only a hint: followers poll anyway

    async def notify(self) -> None:
        """Wake followers. Only a hint (empty payload); followers poll anyway. Sent after commit."""
        async with self.pool.acquire() as c:
            await c.execute(f"NOTIFY {NOTIFY_CHANNEL}")
