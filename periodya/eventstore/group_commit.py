"""Group commit of pool-path appends: concurrent `EventStore.append` calls without a connection share
one transaction, one round trip and one commit (schema.sql `append_batch`).

Scheduling. An append that finds nothing in flight and nobody queued runs at once through the single
path (`append_events`, its own transaction, in the caller's task): at concurrency 1 nothing changes,
neither latency nor cost. Otherwise it queues. When nothing is in flight, the next batch takes every
queued append (at most `max_appends` appends and `max_events` events, always at least one); while one
batch is in flight, a further one (up to `max_running`) starts only once `overlap_events` events are
queued. Measured on 2 cores (`python -m bench append`, --max-running / --overlap-events): small
appends are cheapest in few big batches (server CPU per 1-event append at concurrency 8: ~95 us with
one batch in flight, ~150 us with two always overlapping, ~240 us without group commit), but one
batch at a time leaves a core and the WAL flush idle; 10-event appends need a second batch running to
keep both cores busy. A threshold of 4 queued events gives two batches of about four appends each at
concurrency 8 (rather than a batch of one started by every arrival). A batch of one takes the
single path.

Why it is safe:
* Atomic per append. `append_batch` walks the appends in order against running stream heads (which
  include the earlier appends of the same batch); an append whose expected versions do not match is
  refused whole, nothing of it is written, and its caller gets exactly the ConcurrencyConflict the
  single path would raise (stream, expected, actual). The other appends go on.
* Lock order. The batch takes the sorted, distinct union of every append's lock keys in one pass
  BEFORE any read or write, like every other writer: no deadlock, and "lock before you write" holds,
  so the batch gets its transaction id after all its locks (commit order = (tx, seq) order).
* Commit order. All events of a batch share one transaction id and are inserted in append order
  (ascending seq), so "read all" returns them in (tx, seq) = append order, exactly once.
* All or nothing for anything else. If the batch statement fails with a database error (bad data,
  the UNIQUE backstop, a statement timeout), the server rolled the whole transaction back: nothing
  was written, and every append of it runs again ALONE through the single path, so one bad append
  never fails the others. A failure whose outcome is unknown (the connection lost mid-statement) is
  NOT retried: every caller of the batch gets the error, as a single append would.
* Cancellation. A caller cancelled while queued is dropped before its batch is sent; once sent, its
  append may commit (as with the single path).

What it changes: appends of unrelated callers can share a transaction id (and a `recorded_at`), and an
append in a batch waits for the locks of every append of that batch. Appends inside a caller's
transaction (`conn=`, the command path) never come here.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from periodya import metrics
from periodya.errors import ConcurrencyConflict
from periodya.eventstore.model import RecordedEvent
from periodya.eventstore.prepared import PreparedAppend

MAX_RUNNING = 2
OVERLAP_EVENTS = 4
MAX_APPENDS = 128
MAX_EVENTS = 2000
_BATCH = ("SELECT append_no, seq, tx, stream_id, stream_version, recorded_at, expected, actual "
          "FROM append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)")
Single = Callable[[PreparedAppend], Awaitable[list[RecordedEvent]]]


@dataclass(eq=False)
class _Queued:
    prepared: PreparedAppend
    future: asyncio.Future[list[RecordedEvent]] = field(repr=False)


@dataclass
class BatchStats:
    """Counters for benches and tests: how many transactions ran and how many appends they carried."""

    transactions: int = 0
    appends: int = 0
    fallbacks: int = 0

    @property
    def appends_per_commit(self) -> float:
        return self.appends / self.transactions if self.transactions else 0.0


class AppendBatcher:
    """Groups concurrent pool-path appends (see the module docstring). One per EventStore and event loop."""

    def __init__(self, pool: asyncpg.Pool, single: Single, *, max_running: int = MAX_RUNNING,
                 overlap_events: int = OVERLAP_EVENTS, max_appends: int = MAX_APPENDS,
                 max_events: int = MAX_EVENTS) -> None:
        if max_running < 1 or max_appends < 1 or max_events < 1 or overlap_events < 0:
            raise ValueError("max_running, max_appends and max_events must be at least 1, overlap_events at least 0")
        self.pool, self._single = pool, single
        self.max_running, self.max_appends, self.max_events = max_running, max_appends, max_events
        self.overlap_events = overlap_events
        self._queued_events = 0
        self.stats = BatchStats()
        self._queue: deque[_Queued] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones

    async def append(self, prepared: PreparedAppend) -> list[RecordedEvent]:
        if not self._in_flight and not self._queue:
            self._in_flight += 1  # runs at once, in the caller's task: no added latency
            try:
                metrics.group_commit_batch("event store append", 1)
                self.stats.transactions += 1
                self.stats.appends += 1
                return await self._single(prepared)
            finally:
                self._in_flight -= 1
                self._start()
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(prepared, future))
        self._queued_events += len(prepared.flat)
        self._start()
        return await future

    # --- scheduling ---------------------------------------------------------------------------------

    def _may_start(self) -> bool:
        """A batch starts when nothing is in flight, or, while fewer than `max_running` are, when the
        queue holds at least `overlap_events` events: small appends then wait and make bigger batches
        (less CPU per append), large ones keep a second server process busy."""
        if not self._queue:
            return False
        return not self._in_flight or (self._in_flight < self.max_running
                                       and self._queued_events >= self.overlap_events)

    def _start(self) -> None:
        while self._may_start():
            batch = self._take()
            if not batch:
                return
            self._in_flight += 1
            # a fresh context: the batch belongs to no single caller
            task = asyncio.get_running_loop().create_task(self._run(batch), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Queued]:
        """The next batch: queued appends in arrival order, skipping callers cancelled while queued."""
        batch: list[_Queued] = []
        events = 0
        while self._queue and len(batch) < self.max_appends:
            q = self._queue[0]
            if not q.future.done() and batch and events + len(q.prepared.flat) > self.max_events:
                break
            self._queue.popleft()
            self._queued_events -= len(q.prepared.flat)
            if q.future.done():  # the caller was cancelled while queued
                continue
            batch.append(q)
            events += len(q.prepared.flat)
        return batch

    # --- running ------------------------------------------------------------------------------------

    async def _run(self, batch: list[_Queued]) -> None:
        try:
            outcomes = await self._outcomes(batch)
        except BaseException as exc:  # cancelled (shutdown) or an unknown outcome: nobody may wait forever
            for q in batch:
                if not q.future.done():
                    if isinstance(exc, Exception):
                        q.future.set_exception(exc)
                    else:
                        q.future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._in_flight -= 1
            self._start()
        for q, outcome in zip(batch, outcomes, strict=True):
            if q.future.done():
                continue
            if isinstance(outcome, BaseException):
                q.future.set_exception(outcome)
            else:
                q.future.set_result(outcome)

    async def _outcomes(self, batch: list[_Queued]) -> list[list[RecordedEvent] | BaseException]:
        metrics.group_commit_batch("event store append", len(batch))
        self.stats.transactions += 1
        self.stats.appends += len(batch)
        if len(batch) == 1:
            try:
                return [await self._single(batch[0].prepared)]
            except Exception as exc:
                return [exc]
        try:
            return await self._commit([q.prepared for q in batch])
        except asyncpg.PostgresError:  # the server refused the statement: nothing written; isolate
            self.stats.fallbacks += 1
            self.stats.transactions += len(batch)
            return list(await asyncio.gather(*(self._single(q.prepared) for q in batch), return_exceptions=True))

    async def _commit(self, batch: list[PreparedAppend]) -> list[list[RecordedEvent] | BaseException]:
        keys: set[int] = set()
        stream_no: dict[str, int] = {}
        item_append: list[int] = []
        item_stream: list[int] = []
        item_expected: list[int] = []
        ev_item: list[int] = []
        types: list[str] = []
        datas: list[str] = []
        metas: list[str] = []
        for number, p in enumerate(batch, start=1):
            keys.update(p.keys)
            base = len(item_append)
            for stream, expected in zip(p.streams, p.expected, strict=True):
                item_append.append(number)
                item_stream.append(stream_no.setdefault(stream, len(stream_no) + 1))
                item_expected.append(expected)
            ev_item += [base + i for i in p.ev_stream]
            types += p.types
            datas += p.datas
            metas += p.metas
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_BATCH, sorted(keys), list(stream_no), item_append, item_stream, item_expected,
                                    ev_item, types, datas, metas)
        conflicts = {row[0]: ConcurrencyConflict(row[3], row[6], row[7]) for row in rows if row[0] is not None}
        outcomes: list[list[RecordedEvent] | BaseException] = []
        at = len(conflicts)  # conflict rows come first, then one row per written event in append order
        for number, p in enumerate(batch, start=1):
            if number in conflicts:
                outcomes.append(conflicts[number])
                continue
            n = len(p.flat)
            outcomes.append(p.records(rows[at:at + n], first=1))
            at += n
        if at != len(rows):
            raise AssertionError(f"append_batch returned {len(rows)} rows, expected {at}")
        return outcomes
