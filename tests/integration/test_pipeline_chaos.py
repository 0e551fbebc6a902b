"""2,000 payouts through a faulty provider with overlapping runners: one provider payout each, never two.

Two outbox runs and two webhook runs go at once, repeatedly, against a simulator that fails 10% of
calls before acting, drops 5% of answers after creating the payout, drops 20% of webhooks and
duplicates 20%. Then repair and reconcile-pull (thresholds passed by moving the runners' clock)
settle what the faults left behind.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest

from periodya.config import Settings
from periodya.runners import outbox, reconcile, repair, webhooks
from tests.integration.invariants import assert_money_invariants
from tests.integration.pipeline import live_pipeline

N = 2000
PAYEES = 40
FAULTS = {"errorRate": 0.1, "dropAfterCreateRate": 0.05, "webhookDropRate": 0.2, "webhookDuplicateRate": 0.2,
          "autoSettle": True, "settleDelayMs": 0, "paidRatio": 0.8}


@pytest.mark.slow
async def test_two_thousand_payouts_through_faults(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, sim=FAULTS) as p:
        per_payee = N // PAYEES
        for i in range(PAYEES):
            await p.fund_payee(f"p{i}", per_payee * 1_000)
        await asyncio.gather(*(p.request(f"po-{i:04d}", f"p{i % PAYEES}", 1_000) for i in range(N)))

        for _round in range(60):
            await asyncio.gather(outbox.run(p.deps), outbox.run(p.deps), webhooks.run(p.deps), webhooks.run(p.deps))
            counts = await p.status_counts()
            if set(counts) <= {"FINALIZED", "FAILED"}:
                break
            if not counts.get("REQUESTED") and not await pool.fetchval(
                    "SELECT count(*) FROM provider_events WHERE applied_seq IS NULL"):
                p.advance(max(settings.sending_stuck_minutes, settings.sent_stuck_minutes) + 1)
                await asyncio.gather(repair.run(p.deps), repair.run(p.deps), reconcile.run(p.deps),
                                     reconcile.run(p.deps))
            else:
                p.advance(15)  # let backoffs expire
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"did not settle: {await p.status_counts()}")

        sim_payouts = await p.sim_payouts()
        per_payout = Counter(sp["metadata"]["payout_id"] for sp in sim_payouts)
        assert len(per_payout) == len(sim_payouts)  # never two provider payouts for one payout
        stats = await p.sim_stats()
        assert stats["payoutsCreated"] == len(sim_payouts)
        assert stats["webhooksDropped"] > 0 and stats["idempotentReplays"] > 0  # the faults really happened

        rows = await pool.fetch("SELECT payout_id, status, provider_payout_id, funds_returned FROM payouts")
        by_provider = {sp["id"]: sp for sp in sim_payouts}
        for r in rows:
            if r["status"] == "FINALIZED":
                assert by_provider[r["provider_payout_id"]]["status"] == "paid"
            else:
                assert r["status"] == "FAILED" and r["funds_returned"], dict(r)
                if r["provider_payout_id"] is not None:
                    assert by_provider[r["provider_payout_id"]]["status"] in ("failed", "canceled")
        assert len(rows) == N
        paid = sum(1 for sp in sim_payouts if sp["status"] == "paid")
        assert await pool.fetchval("SELECT count(*) FROM payouts WHERE status = 'FINALIZED'") == paid
        in_flight = "SELECT coalesce(sum(balance), 0) FROM balances WHERE account LIKE 'inflight:%'"
        assert await pool.fetchval(in_flight) == 0
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'cash:platform'") == -(
            N * 1_000 - paid * 1_000)
        await assert_money_invariants(pool)
