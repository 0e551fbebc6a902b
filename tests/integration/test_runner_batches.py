"""The batched outbox and webhooks runs: a batch is one transaction, but each item keeps its own rules.

A payout (or provider event) another transaction holds is skipped, never handled twice; a payout's
provider events are applied in arrival order within one batch; an event whose earlier event is held
elsewhere waits; money stays balanced throughout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from periodya.config import Settings
from periodya.domain import payout
from periodya.eventstore.hashing import lock_key
from periodya.eventstore.store import stream_lock
from periodya.projections.provider_events import stream as event_stream
from periodya.runners import outbox, webhooks
from tests.integration.invariants import assert_money_invariants
from tests.integration.pipeline import live_pipeline, wait_for


@asynccontextmanager
async def holding(pool: asyncpg.Pool, stream_id: str) -> AsyncIterator[None]:
    """Hold a stream's advisory lock in another transaction, as an overlapping run would."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(stream_lock(stream_id)))
        yield


async def _events_stored(pool: asyncpg.Pool, n: int) -> None:
    await wait_for(lambda: pool.fetchval("SELECT count(*) = $1 FROM provider_events", n))


async def test_outbox_batch_skips_a_payout_another_run_holds(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        for i in range(3):
            await p.request(f"po-{i}", "p1", 1_000)
        async with holding(pool, payout.stream("po-1")):
            summary = await outbox.run(p.deps)
            assert summary.details == {"sent": 2}, summary.as_json()
            assert (await p.sim_stats())["payoutsCreated"] == 2  # never called for the held one
            assert await pool.fetchval("SELECT status FROM payouts WHERE payout_id = 'po-1'") == "REQUESTED"
        summary = await outbox.run(p.deps)
        assert summary.details == {"sent": 1}, summary.as_json()
        assert await p.status_counts() == {"SENT": 3}
        assert len({sp["metadata"]["payout_id"] for sp in await p.sim_payouts()}) == 3
        assert (await p.sim_stats())["payoutsCreated"] == 3
        await assert_money_invariants(pool)


async def test_webhooks_batch_applies_one_payouts_events_in_arrival_order(pool: asyncpg.Pool,
                                                                         settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-1", "p1", 4_000)
        await p.request("po-2", "p1", 1_000)
        await outbox.run(p.deps)
        ppid = await pool.fetchval("SELECT provider_payout_id FROM payouts WHERE payout_id = 'po-1'")
        other = await pool.fetchval("SELECT provider_payout_id FROM payouts WHERE payout_id = 'po-2'")
        await p.settle(ppid, "paid")
        await _events_stored(pool, 1)
        await p.settle(other, "paid")
        await _events_stored(pool, 2)
        await p.settle(ppid, "failed")  # paid, then failed: finalize, then a compensating group
        await _events_stored(pool, 3)

        summary = await webhooks.run(p.deps)  # all three in one batch
        assert (summary.processed, summary.details) == (3, {"applied": 3}), summary.as_json()
        row = await pool.fetchrow("SELECT * FROM payouts WHERE payout_id = 'po-1'")
        assert (row["status"], row["ledger_finalized"], row["funds_returned"]) == ("FAILED", True, True)
        assert await pool.fetchval("SELECT status FROM payouts WHERE payout_id = 'po-2'") == "FINALIZED"
        kinds = [r["kind"] for r in await pool.fetch(
            "SELECT kind FROM ledger_groups WHERE subject = $1 ORDER BY seq", payout.stream("po-1"))]
        assert kinds == ["payout_reserved", "payout_finalized", "payout_compensated"]
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'payable:p1'") == 9_000
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'cash:platform'") == -9_000
        assert await pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'ProviderEventApplied'") == 3
        assert (await webhooks.run(p.deps)).processed == 0
        await assert_money_invariants(pool)


async def test_webhooks_event_waits_while_an_earlier_one_is_held(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-1", "p1", 4_000)
        await outbox.run(p.deps)
        ppid = await pool.fetchval("SELECT provider_payout_id FROM payouts")
        await p.settle(ppid, "paid")
        await _events_stored(pool, 1)
        await p.settle(ppid, "failed")
        await _events_stored(pool, 2)
        first = await pool.fetchval("SELECT event_id FROM provider_events ORDER BY received_seq LIMIT 1")

        async with holding(pool, event_stream(first)):
            summary = await webhooks.run(p.deps)
            assert (summary.processed, summary.skipped) == (0, 2), summary.as_json()  # held; waiting for it
            assert await pool.fetchval("SELECT status FROM payouts") == "SENT"
            assert await pool.fetchval("SELECT count(*) FROM provider_events WHERE applied_seq IS NULL") == 2
        summary = await webhooks.run(p.deps)
        assert summary.details == {"applied": 2}, summary.as_json()
        assert await pool.fetchval("SELECT status FROM payouts") == "FAILED"
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'payable:p1'") == 10_000
        await assert_money_invariants(pool)
