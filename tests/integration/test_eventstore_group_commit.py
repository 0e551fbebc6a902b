"""Group commit of pool-path appends (periodya/eventstore/group_commit.py), on a real PostgreSQL.

To put appends into ONE batch deterministically, a test holds the only transaction slot
(max_running=1): an append to a stream whose advisory lock another connection holds is in flight,
so the next appends queue; releasing the lock lets the batcher take all of them at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import pytest

from periodya.errors import ConcurrencyConflict
from periodya.eventstore import ANY, NO_STREAM, START, EventStore, NewEvent, StreamAppend
from periodya.eventstore.verify import verify_chains


def ev(kind: str, **data: Any) -> NewEvent:
    return NewEvent(kind, data)


async def _wait_for_advisory_waiter(pool: asyncpg.Pool) -> None:
    for _ in range(500):
        if await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the gate append never waited on the advisory lock")


async def _wait_for_row_waiter(pool: asyncpg.Pool) -> None:
    for _ in range(500):
        if await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the batch never waited on the duplicate row")


async def one_batch(store: EventStore, pool: asyncpg.Pool, calls: list[list[StreamAppend]],
                    cancel: tuple[int, ...] = ()) -> list[Any]:
    """Run `calls` as ONE batch behind a gate append; returns each call's result or exception."""
    assert store.batcher is not None and store.batcher.max_running == 1
    async with pool.acquire() as blocker:
        tx = blocker.transaction()
        await tx.start()
        await store.lock(blocker, ["stream:gate"])
        gate = asyncio.create_task(store.append([StreamAppend("gate", ANY, [ev("Gate")])]))
        await _wait_for_advisory_waiter(pool)
        before, fell_back = store.batcher.stats.transactions, store.batcher.stats.fallbacks
        tasks = [asyncio.create_task(store.append(c)) for c in calls]
        for _ in range(100):
            if len(store.batcher._queue) == len(calls):
                break
            await asyncio.sleep(0)
        assert len(store.batcher._queue) == len(calls)  # all queued behind the gate
        for i in cancel:
            tasks[i].cancel()
        await tx.rollback()
    await gate
    results = await asyncio.gather(*tasks, return_exceptions=True)
    # one batch transaction for all of them (plus one per append when the batch fell back)
    alone = len(calls) - len(cancel) if store.batcher.stats.fallbacks > fell_back else 0
    assert store.batcher.stats.transactions - before == 1 + alone
    return results


@pytest.fixture
def gated(pool: asyncpg.Pool) -> EventStore:
    return EventStore(pool, max_running=1)


async def test_two_appends_to_one_stream_in_one_batch(gated: EventStore, pool: asyncpg.Pool) -> None:
    """Later appends of a batch see the earlier ones: they chain on, or conflict per their expected version."""
    results = await one_batch(gated, pool, [
        [StreamAppend("s", NO_STREAM, [ev("A", n=1), ev("A", n=2)])],
        [StreamAppend("s", 2, [ev("B", n=3)])],       # chains after the first append
        [StreamAppend("s", 2, [ev("C", n=99)])],      # stale: the stream is at 3 by now
        [StreamAppend("s", NO_STREAM, [ev("C", n=98)])],
        [StreamAppend("s", ANY, [ev("D", n=4)])],
    ])
    first, second, stale, again, anything = results
    assert [e.stream_version for e in first] == [1, 2]
    assert [e.stream_version for e in second] == [3]
    assert isinstance(stale, ConcurrencyConflict) and (stale.stream_id, stale.expected, stale.actual) == ("s", 2, 3)
    assert isinstance(again, ConcurrencyConflict) and (again.expected, again.actual) == (0, 3)
    assert [e.stream_version for e in anything] == [4]
    stored = await gated.read_stream("s")
    assert [e.data["n"] for e in stored] == [1, 2, 3, 4]
    assert stored == first + second + anything
    assert len({e.tx for e in stored}) == 1  # one transaction
    assert await pool.fetchval("SELECT count(*) FROM chain_breaks()") == 0
    assert (await verify_chains(pool)).ok


async def test_a_conflicting_append_leaves_the_others_written(gated: EventStore, pool: asyncpg.Pool) -> None:
    await gated.append([StreamAppend("x", NO_STREAM, [ev("X")])])
    results = await one_batch(gated, pool, [
        [StreamAppend("a", NO_STREAM, [ev("A")])],
        [StreamAppend("b", NO_STREAM, [ev("B")]), StreamAppend("x", NO_STREAM, [ev("X2")])],  # x conflicts
        [StreamAppend("c", NO_STREAM, [ev("C")]), StreamAppend("x", 1, [ev("X3")])],
    ])
    assert isinstance(results[1], ConcurrencyConflict)
    assert (results[1].stream_id, results[1].expected, results[1].actual) == ("x", 0, 1)
    assert await gated.read_stream("b") == []  # atomic per append: nothing of the refused one
    assert [e.type for e in await gated.read_stream("a")] == ["A"]
    assert [e.type for e in await gated.read_stream("c")] == ["C"]
    assert [e.type for e in await gated.read_stream("x")] == ["X", "X3"]
    written = [e for e in await _settled(gated, 5) if e.stream_id not in ("gate", "x") or e.stream_version == 2]
    assert results[0] + results[2] == written  # read back in append order: a, then c and x
    assert await pool.fetchval("SELECT count(*) FROM chain_breaks()") == 0


async def test_a_failing_batch_falls_back_and_only_the_bad_append_fails(gated: EventStore,
                                                                       pool: asyncpg.Pool) -> None:
    """A NUL character is refused by jsonb: the batch statement fails whole, then every append runs
    alone and only the bad one gets the error, the very error the single path raises."""
    single = EventStore(pool, group_commit=False)
    with pytest.raises(asyncpg.PostgresError) as alone:
        await single.append([StreamAppend("solo-bad", NO_STREAM, [ev("Bad", text="nul\u0000")])])
    assert gated.batcher is not None
    results = await one_batch(gated, pool, [
        [StreamAppend("good-1", NO_STREAM, [ev("Good")])],
        [StreamAppend("bad", NO_STREAM, [ev("Bad", text="nul\u0000")])],
        [StreamAppend("good-2", NO_STREAM, [ev("Good")])],
    ])
    assert gated.batcher.stats.fallbacks == 1
    assert type(results[1]) is type(alone.value)
    assert [len(results[0]), len(results[2])] == [1, 1]
    assert results[0][0].tx != results[2][0].tx  # each ran alone after the fallback
    assert {e.stream_id for e in await _settled(gated, 3)} == {"gate", "good-1", "good-2"}


async def test_the_unique_backstop_fails_the_batch_and_the_fallback_reports_a_conflict(
        gated: EventStore, pool: asyncpg.Pool) -> None:
    """A row written WITHOUT the store's locks (behind its back) makes the batch's INSERT hit
    UNIQUE (stream_id, stream_version): the batch falls back, and only that append conflicts."""
    async with pool.acquire() as sneaky:
        tx = sneaky.transaction()
        await tx.start()
        await sneaky.execute("INSERT INTO events (stream_id, stream_version, event_type, data, prev_hash, hash) "
                             "VALUES ('dup', 1, 'Sneaky', '{}', '\\x00', '\\x00')")
        waiting = asyncio.create_task(one_batch(gated, pool, [
            [StreamAppend("ok", NO_STREAM, [ev("Ok")])],
            [StreamAppend("dup", NO_STREAM, [ev("Dup")])],  # head read sees nothing: not committed yet
        ]))
        await _wait_for_row_waiter(pool)  # the batch's INSERT waits on the uncommitted duplicate
        await tx.commit()
    results = await waiting
    assert gated.batcher is not None and gated.batcher.stats.fallbacks == 1
    assert isinstance(results[1], ConcurrencyConflict)
    assert [e.type for e in results[0]] == ["Ok"]


async def test_a_caller_cancelled_while_queued_is_dropped(gated: EventStore, pool: asyncpg.Pool) -> None:
    results = await one_batch(gated, pool, [
        [StreamAppend("kept-1", NO_STREAM, [ev("K")])],
        [StreamAppend("dropped", NO_STREAM, [ev("D")])],
        [StreamAppend("kept-2", NO_STREAM, [ev("K")])],
    ], cancel=(1,))
    assert isinstance(results[1], asyncio.CancelledError)
    assert await gated.read_stream("dropped") == []
    assert {e.stream_id for e in await _settled(gated, 3)} == {"gate", "kept-1", "kept-2"}


async def test_concurrent_batched_appends_keep_chains_and_read_all_exact(pool: asyncpg.Pool) -> None:
    """48 writers x 15 appends, to shared streams (ANY, or their exact version under a race) and
    to their own: the chains verify in SQL and in Python, every event is read back exactly once."""
    store = EventStore(pool)
    assert store.batcher is not None
    writers, rounds = 48, 15

    async def write(w: int) -> int:
        written = 0
        for r in range(rounds):
            shared = f"shared-{(w + r) % 4}"
            events = [ev("W", w=w, r=r, part=p) for p in range(1 + (w + r) % 3)]
            try:
                if r % 3 == 0:  # a race for an exact version: conflicts are expected
                    head = await store.read_stream(shared)
                    await store.append([StreamAppend(shared, len(head), events)])
                else:
                    await store.append([StreamAppend(shared, ANY, events),
                                        StreamAppend(f"own-{w}", ANY, [ev("Own", w=w, r=r)])])
                    written += 1
                written += len(events)
            except ConcurrencyConflict:
                pass
        return written

    totals = await asyncio.gather(*(write(w) for w in range(writers)))
    assert store.batcher.stats.appends_per_commit > 1.5  # the appends really went in batches
    everything = await _settled(store, sum(totals))
    assert len(everything) == sum(totals)
    assert len({e.seq for e in everything}) == len(everything)  # exactly once
    assert Counter((e.stream_id, e.stream_version) for e in everything).most_common(1)[0][1] == 1
    assert await pool.fetchval("SELECT count(*) FROM events") == sum(totals)
    assert await pool.fetchval("SELECT count(*) FROM chain_breaks()") == 0
    assert (await verify_chains(pool)).ok
    positions = [e.position for e in everything]
    assert positions == sorted(positions)


async def _read_all(store: EventStore) -> list[Any]:
    events: list[Any] = []
    position = START
    while page := await store.read_all(position, limit=500):
        events += page
        position = page[-1].position
    return events


async def _settled(store: EventStore, count: int) -> list[Any]:
    """Read all once `count` events are below the snapshot horizon (it is cluster-wide: another
    session's transaction can hold it back for a moment)."""
    async with asyncio.timeout(10):
        while len(events := await _read_all(store)) < count:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.02)
    return events
