"""Optimistic concurrency and commit-order safety of the event store, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest

from periodya.errors import ConcurrencyConflict
from periodya.eventstore import ANY, NO_STREAM, START, EventStore, NewEvent, StreamAppend


async def test_sixteen_writers_race_for_each_version(store: EventStore, pool: asyncpg.Pool) -> None:
    """16 writers append 3 events each with the same expected version, for 10 rounds: one wins each."""
    writers, rounds = 16, 10

    async def write(writer: int, expected: int) -> int:
        events = [NewEvent("Wrote", {"writer": writer, "part": p}, {"round": expected}) for p in range(3)]
        await store.append([StreamAppend("race", expected, events)])
        return writer

    version = 0
    for _ in range(rounds):
        results = await asyncio.gather(*(write(w, version) for w in range(writers)), return_exceptions=True)
        winners = [r for r in results if isinstance(r, int)]
        conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
        assert len(winners) == 1, results
        assert len(conflicts) == writers - 1
        assert all(c.stream_id == "race" and c.expected == version and c.actual == version + 3 for c in conflicts)
        version += 3

    events = await store.read_stream("race")
    assert [e.stream_version for e in events] == list(range(1, rounds * 3 + 1))  # no gaps
    per_writer_round = Counter((e.metadata["round"], e.data["writer"]) for e in events)
    assert set(per_writer_round.values()) == {3}  # nothing half-written
    assert await pool.fetchval("SELECT count(*) FROM events") == rounds * 3


async def test_no_stream_and_exact_versions(store: EventStore) -> None:
    await store.append([StreamAppend("s", NO_STREAM, [NewEvent("A", {})])])
    with pytest.raises(ConcurrencyConflict):
        await store.append([StreamAppend("s", NO_STREAM, [NewEvent("A", {})])])
    with pytest.raises(ConcurrencyConflict):
        await store.append([StreamAppend("s", 5, [NewEvent("A", {})])])
    await store.append([StreamAppend("s", 1, [NewEvent("B", {})])])
    await store.append([StreamAppend("s", ANY, [NewEvent("C", {})])])
    assert [e.type for e in await store.read_stream("s")] == ["A", "B", "C"]


async def test_multi_stream_append_is_atomic(store: EventStore) -> None:
    await store.append([StreamAppend("b", NO_STREAM, [NewEvent("A", {})])])
    with pytest.raises(ConcurrencyConflict) as info:
        await store.append([StreamAppend("a", NO_STREAM, [NewEvent("A", {})]),
                            StreamAppend("b", NO_STREAM, [NewEvent("A", {})])])
    assert info.value.stream_id == "b"
    assert await store.read_stream("a") == []  # the first stream's events were not written either


async def _read_all_settled(store: EventStore, count: int) -> list:  # type: ignore[type-arg]
    """Read all once `count` events are below the snapshot horizon. The horizon is cluster-wide: a
    transaction in another database (another test session) can hold it back for a moment."""
    async with asyncio.timeout(10):
        while len(events := await store.read_all(START)) < count:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.02)
    return events


async def _wait_for_advisory_waiter(pool: asyncpg.Pool) -> None:
    for _ in range(200):
        if await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second transaction never waited on the advisory lock")


async def _shared_stream_order(store: EventStore, pool: asyncpg.Pool, *, late_locks: bool) -> list[int]:
    """T1 holds the lock of stream S; T2 appends to A and S; T1 writes S and commits first.
    Returns the stream versions of S in the order "read all" returns them."""
    async with pool.acquire() as c1, pool.acquire() as c2:
        t1 = c1.transaction()
        await t1.start()
        await store.lock(c1, ["stream:S"])  # T1 holds S, but has no transaction id yet

        async def t2() -> None:
            async with c2.transaction():
                if late_locks:  # the mistake: write A (taking an xid) before locking S
                    await store.append([StreamAppend("A", ANY, [NewEvent("Other", {})])], conn=c2)
                    await store.append([StreamAppend("S", ANY, [NewEvent("Second", {})])], conn=c2)
                else:
                    await store.append([StreamAppend("A", ANY, [NewEvent("Other", {})]),
                                        StreamAppend("S", ANY, [NewEvent("Second", {})])], conn=c2)

        task = asyncio.create_task(t2())
        await _wait_for_advisory_waiter(pool)
        await store.append([StreamAppend("S", ANY, [NewEvent("First", {})])], conn=c1)
        await t1.commit()
        await asyncio.wait_for(task, 5)
    return [e.stream_version for e in await _read_all_settled(store, 3) if e.stream_id == "S"]


async def test_shared_stream_reads_back_in_commit_order(store: EventStore, pool: asyncpg.Pool) -> None:
    assert await _shared_stream_order(store, pool, late_locks=False) == [1, 2]


async def test_late_locking_would_break_commit_order(store: EventStore, pool: asyncpg.Pool) -> None:
    """Shows the previous test can fail: locking after the first write reads S back out of order."""
    assert await _shared_stream_order(store, pool, late_locks=True) == [2, 1]


async def test_shared_account_lock_orders_transactions(store: EventStore, pool: asyncpg.Pool) -> None:
    """The same guarantee for a ledger account shared by two different streams."""
    async with pool.acquire() as c1, pool.acquire() as c2:
        t1 = c1.transaction()
        await t1.start()
        await store.lock(c1, ["account:payable:p1"])

        async def t2() -> None:
            async with c2.transaction():
                await store.append([StreamAppend("payout-2", NO_STREAM, [NewEvent("Second", {})])],
                                   conn=c2, lock_names=["account:payable:p1"])

        task = asyncio.create_task(t2())
        await _wait_for_advisory_waiter(pool)
        await store.append([StreamAppend("payout-1", NO_STREAM, [NewEvent("First", {})])], conn=c1,
                           lock_names=["account:payable:p1"])
        await t1.commit()
        await asyncio.wait_for(task, 5)
    assert [e.type for e in await _read_all_settled(store, 2)] == ["First", "Second"]


async def test_append_returns_events_in_append_order_across_streams(store: EventStore, pool: asyncpg.Pool) -> None:
    """append_events returns its rows straight from the INSERT: one per event, in append order, with
    ascending seq, the versions continuing each stream, and a chain the database itself verifies."""
    await store.append([StreamAppend("m-a", NO_STREAM, [NewEvent("A", {"n": 0})])])
    recorded = await store.append([
        StreamAppend("m-b", NO_STREAM, [NewEvent("B", {"n": i}) for i in range(3)]),
        StreamAppend("m-a", 1, [NewEvent("A", {"n": i}) for i in range(1, 3)]),
        StreamAppend("m-empty", NO_STREAM, []),
    ])
    assert [(e.stream_id, e.stream_version, e.data["n"]) for e in recorded] == [
        ("m-b", 1, 0), ("m-b", 2, 1), ("m-b", 3, 2), ("m-a", 2, 1), ("m-a", 3, 2)]
    seqs = [e.seq for e in recorded]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert len({(e.tx, e.recorded_at) for e in recorded}) == 1  # one transaction, one timestamp
    stored = {(e.stream_id, e.stream_version): e
              for e in await store.read_stream("m-a") + await store.read_stream("m-b")}
    assert all(stored[(e.stream_id, e.stream_version)] == e for e in recorded)
    assert await store.read_stream("m-empty") == []
    assert await pool.fetchval("SELECT count(*) FROM chain_breaks()") == 0
