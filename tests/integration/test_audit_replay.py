"""Audit replay: clean after random command programs, bounded diffs, --until, and --swap under writes."""

from __future__ import annotations

import asyncio
import io
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from periodya.audit import replay as rb
from periodya.audit.diff import diff_table
from periodya.audit.engine import rebuild_into
from periodya.audit.replay import replay_and_diff
from periodya.audit.swap import swap_in
from periodya.cli.replay import run_replay
from periodya.domain import escrow
from periodya.domain.decision import posted
from periodya.event_registry import REGISTRY
from periodya.eventstore import NO_STREAM, EventStore, StreamAppend
from periodya.projections import PROJECTIONS, apply_all
from tests.integration.invariants import assert_money_invariants
from tests.integration.pipeline import wait_for
from tests.integration.test_ledger_properties import _run, ops

PROGRAM = [("fund", 0, 5000, "USD"), ("release", 0, 0, 3000, 100), ("request", 0, 1000, "USD"), ("paid", 0),
           ("request", 0, 500, "USD"), ("failed", 1), ("request", 0, 700, "USD"), ("quarantine_cancel", 2),
           ("fund", 1, 800, "EUR"), ("release", 1, 1, 500, 10), ("refund", 1, 100), ("failed", 0)]


async def replay(pool: asyncpg.Pool, names: list[str] | None = None, *, until: str | None = None,
                 swap: bool = False, limit: int = 10) -> tuple[int, str]:
    out = io.StringIO()
    status = await run_replay(pool, names, until, swap, limit, out)
    return status, out.getvalue()


async def assert_live_equals_replay(pool: asyncpg.Pool) -> None:
    dirty = [d for d in await replay_and_diff(pool, "replay_check") if not d.clean]
    assert dirty == [], dirty


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=st.lists(ops, min_size=1, max_size=25))
async def test_replay_of_every_projection_is_clean_after_random_programs(pool: asyncpg.Pool,
                                                                        program: list[tuple]) -> None:  # type: ignore[type-arg]
    await _run(EventStore(pool), uuid.uuid4().hex[:8] + "-", program)
    status, text = await replay(pool)
    assert status == 0, text
    assert text.rstrip().endswith("identical")
    for name in PROJECTIONS:
        status, text = await replay(pool, [name])
        assert status == 0, text


async def test_diff_is_bounded_per_table(pool: asyncpg.Pool) -> None:
    await _run(EventStore(pool), "b-", [("fund", e, 100 + e, "USD") for e in range(3)] * 1
               + [("fund", 3, 50, "USD"), ("fund", 4, 60, "USD")])
    await pool.execute("UPDATE escrows SET refunded = refunded + 1")  # 5 rows
    status, text = await replay(pool, ["escrows"], limit=2)
    assert status == 1
    assert "escrows: 5 row(s) differ (live 5 rows, replayed 5)" in text
    assert text.count("  row escrow_id=") == 2
    assert "  ... and 3 more" in text
    assert "    refunded: live 1 | replayed 0" in text


async def test_until_rebuilds_the_log_up_to_a_position_and_a_moment(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    await _run(store, "u-", PROGRAM[:3])
    position = await pool.fetchval("SELECT max(seq) FROM events")
    moment = await pool.fetchval("SELECT max(recorded_at) FROM events")
    counts = {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in rb.tables_of(None)}
    await asyncio.sleep(0.01)
    await _run(store, "v-", PROGRAM)
    for until in (str(position), moment.isoformat()):
        status, text = await replay(pool, until=until)
        assert status == 0, text
        assert "not diffed" in text
        for table, n in counts.items():
            assert f"\n{table}: {n} rows\n" in text, (table, n, text)
    status, text = await replay(pool, until="0")
    assert status == 0 and "the empty log" in text and "\nledger_groups: 0 rows\n" in text


async def test_swap_repairs_drift_and_writes_keep_working(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    await _run(store, "s-", PROGRAM)
    indexes = await _definitions(pool)
    await pool.execute("UPDATE balances SET balance = balance + 7, credits = credits + 7 "
                       "WHERE account = 'payable:s-p0'")
    await pool.execute("DELETE FROM outbox WHERE payout_id = 's-po0'")
    status, text = await replay(pool, swap=True)
    assert status == 0, text
    assert "swapped in" in text and "2 differing row(s) replaced" in text
    await assert_live_equals_replay(pool)
    assert await _definitions(pool) == indexes  # same indexes and constraints, in schema periodya
    assert await pool.fetchval("SELECT count(*) FROM replay_retired.balances") > 0
    # The same pool (with its prepared statements) keeps writing, now into the swapped-in tables.
    await _run(store, "t-", PROGRAM)
    await assert_money_invariants(pool)
    await assert_live_equals_replay(pool)


async def test_swap_catches_up_events_committed_after_the_rebuild(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    await _run(store, "c-", PROGRAM)
    async with pool.acquire() as conn:
        tx = await rb.open_repeatable_read(conn)
        result = await rb.rebuild(conn, None)
        await tx.commit()
    await _run(store, "d-", PROGRAM)  # committed after the rebuild's snapshot
    caught_up = await swap_in(pool, result.scratch, None, result.snapshot)
    assert caught_up == await pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE '%d-%'")
    await assert_live_equals_replay(pool)


async def _fund_events(store: EventStore, conn: asyncpg.Connection, escrow_id: str) -> list:  # type: ignore[type-arg]
    decision = escrow.decide_fund(None, escrow.FundEscrow(escrow_id, 900, "USD"))
    sid = escrow.stream(escrow_id)
    appends = [StreamAppend(sid, NO_STREAM, [REGISTRY.to_new(e, {"actor": "test"}) for e in decision.events])]
    appends += [StreamAppend(f"ledger-{g.group_id}", NO_STREAM, [REGISTRY.to_new(posted(g, sid), {"actor": "test"})])
                for g in decision.groups]
    return await store.append(appends, conn=conn)


async def test_swap_with_a_writer_that_appended_but_had_not_projected_yet(pool: asyncpg.Pool) -> None:
    """The writer's events are invisible to the swap; its own inline apply lands in the new tables."""
    store = EventStore(pool)
    await _run(store, "w-", PROGRAM)
    async with pool.acquire() as writer:
        tx = writer.transaction()
        await tx.start()
        recorded = await _fund_events(store, writer, "late")
        status, text = await replay(pool, swap=True)
        assert status == 0, text
        await apply_all(writer, recorded)
        await tx.commit()
    assert await pool.fetchval("SELECT funded FROM escrows WHERE escrow_id = 'late'") == 900
    await assert_live_equals_replay(pool)


async def test_swap_waits_for_a_writer_that_already_projected(pool: asyncpg.Pool) -> None:
    """The writer holds a live table: the swap retries its lock, then catches up the writer's events."""
    store = EventStore(pool)
    await _run(store, "x-", PROGRAM)
    async with pool.acquire() as conn:
        rtx = await rb.open_repeatable_read(conn)
        result = await rb.rebuild(conn, None)
        await rtx.commit()
    async with pool.acquire() as writer:
        tx = writer.transaction()
        await tx.start()
        await apply_all(writer, await _fund_events(store, writer, "early"))
        swap = asyncio.create_task(swap_in(pool, result.scratch, None, result.snapshot))
        await wait_for(lambda: pool.fetchval(  # the swap asked for a lock the writer holds
            "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE NOT l.granted AND a.datname = current_database()"))
        assert not swap.done()  # waiting for the writer's locks, retrying
        await tx.commit()
    assert await swap == 2
    await assert_live_equals_replay(pool)


async def test_swap_under_concurrent_writers(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    await _run(store, "y-", PROGRAM)
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            await _run(store, f"z{n}-{i}-", PROGRAM)
            i += 1

    writers = [asyncio.create_task(writer(n)) for n in range(4)]
    await asyncio.sleep(0.3)
    try:
        status, text = await replay(pool, swap=True)
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert status == 0, text
    await assert_money_invariants(pool)
    await assert_live_equals_replay(pool)


async def _definitions(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    tables = rb.tables_of(None)
    idx = await pool.fetch("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'periodya' "
                           "AND tablename = ANY($1::text[]) ORDER BY 1, 2", tables)
    cons = await pool.fetch("SELECT conrelid::regclass::text AS t, pg_get_constraintdef(oid) AS d FROM pg_constraint "
                            "WHERE connamespace = 'periodya'::regnamespace AND conrelid::regclass::text = ANY($1) "
                            "ORDER BY 1, 2", tables)
    return [(r[0], r[1]) for r in idx] + [(r[0], r[1]) for r in cons]


async def test_audit_rebuild_in_small_pages_and_batches_equals_live(pool: asyncpg.Pool) -> None:
    """Pages of 2 events applied in batches of 5 (whole pages): batch boundaries cut streams anywhere,
    and rows updated across batches must come out as in the live tables."""
    await _run(EventStore(pool), "s-", PROGRAM)
    async with pool.acquire() as conn, pool.acquire() as reader:
        tx = await rb.open_repeatable_read(conn)
        try:
            n = await rebuild_into(conn, "replay_small", None, None, reader=reader, batch=2, apply_batch=5)
            assert n == await conn.fetchval("SELECT count(*) FROM events")
            diffs = [await diff_table(conn, "replay_small", t) for t in rb.tables_of(None)]
        finally:
            await tx.rollback()
    assert all(d.clean for d in diffs), [d for d in diffs if not d.clean]


async def test_audit_rebuild_raises_an_apply_error_as_itself(pool: asyncpg.Pool) -> None:
    """A log the projections refuse (here a protected account overdrawn by a tampered group) ends the
    rebuild with the database's own error, not a wrapper, and nothing of the scratch schema survives."""
    await _run(EventStore(pool), "t-", PROGRAM[:2])
    async with pool.acquire() as c, c.transaction():
        await c.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await c.execute("UPDATE events SET data = jsonb_set(data, '{entries,0,debit}', '999999') "
                        "WHERE event_type = 'LedgerGroupPosted' AND data->>'kind' = 'escrow_released'")
        await c.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    async with pool.acquire() as conn, pool.acquire() as reader:
        tx = await rb.open_repeatable_read(conn)
        try:
            with pytest.raises(asyncpg.CheckViolationError):
                await rebuild_into(conn, "replay_bad", None, None, reader=reader)
        finally:
            await tx.rollback()
    assert await pool.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'replay_bad'") == 0


async def test_swap_refuses_a_rebuild_that_fails_a_money_invariant(pool: asyncpg.Pool) -> None:
    """A log whose replay creates money (a tampered group credits one cent more than it debits, so no CHECK
    constraint trips) is rebuilt but not swapped in: the swap's invariant check (projections.invariants)
    names the group, and the live tables stay as they were."""
    await _run(EventStore(pool), "m-", PROGRAM[:2])
    group = await pool.fetchrow("SELECT seq, data FROM events WHERE event_type = 'LedgerGroupPosted' "
                                "AND data->>'kind' = 'escrow_released'")
    line = next(i for i, e in enumerate(group["data"]["entries"]) if int(e["credit"]) > 0)
    async with pool.acquire() as c, c.transaction():
        await c.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await c.execute("UPDATE events SET data = jsonb_set(data, ARRAY['entries', $2::text, 'credit'], "
                        "to_jsonb((data->'entries'->($2::int)->>'credit')::bigint + 1)) WHERE seq = $1",
                        group["seq"], str(line))
        await c.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    before = await pool.fetch("SELECT * FROM balances ORDER BY account, currency")
    status, text = await replay(pool, swap=True)
    assert status == 1, text
    assert f"NOT SWAPPED: the rebuild fails an invariant: ledger group {group['data']['groupId']} does not " \
           "balance in USD" in text, text
    assert "swapped in" not in text
    assert await pool.fetch("SELECT * FROM balances ORDER BY account, currency") == before
