"""The payout pipeline against the real simulator: outbox -> provider -> signed webhook -> ledger."""

from __future__ import annotations

import asyncpg

from periodya.config import Settings
from periodya.runners import outbox, reconcile, repair, webhooks
from tests.integration.invariants import assert_money_invariants
from tests.integration.pipeline import live_pipeline, wait_for


async def test_paid_payout_is_finalized_by_webhook(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-1", "p1", 4_000)
        summary = await outbox.run(p.deps)
        assert (summary.processed, summary.succeeded) == (1, 1)
        row = await pool.fetchrow("SELECT * FROM payouts WHERE payout_id = 'po-1'")
        assert row["status"] == "SENT" and row["provider_payout_id"].startswith("po_")
        await p.settle(row["provider_payout_id"], "paid")
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
        assert (await webhooks.run(p.deps)).succeeded == 1
        row = await pool.fetchrow("SELECT * FROM payouts WHERE payout_id = 'po-1'")
        assert (row["status"], row["ledger_finalized"]) == ("FINALIZED", True)
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'inflight:p1'") == 0
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'payable:p1'") == 6_000
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'cash:platform'") == -6_000
        await assert_money_invariants(pool)


async def test_failed_payout_returns_funds(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-1", "p1", 4_000)
        await outbox.run(p.deps)
        ppid = await pool.fetchval("SELECT provider_payout_id FROM payouts")
        await p.settle(ppid, "failed")
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
        await webhooks.run(p.deps)
        assert await pool.fetchval("SELECT status FROM payouts") == "FAILED"
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'payable:p1'") == 10_000
        await assert_money_invariants(pool)


async def test_dropped_webhook_is_reconciled_by_pull(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, sim={"webhookDropRate": 1.0}) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-1", "p1", 4_000)
        await outbox.run(p.deps)
        await p.settle(await pool.fetchval("SELECT provider_payout_id FROM payouts"), "paid")
        assert (await reconcile.run(p.deps)).processed == 0  # not stuck yet
        p.advance(settings.sent_stuck_minutes + 1)
        assert (await reconcile.run(p.deps)).succeeded == 1
        assert await pool.fetchval("SELECT status FROM payouts") == "FINALIZED"
        assert await pool.fetchval("SELECT count(*) FROM provider_events") == 0
        await assert_money_invariants(pool)


async def test_stuck_sending_is_repaired_without_a_second_payout(pool: asyncpg.Pool, settings: Settings) -> None:
    """A runner claimed the payout (SENDING committed), the provider made it, and the runner died before
    recording the answer: the payout is stuck in SENDING. The outbox never resends it; repair, once the
    threshold passed, resends with the same key, gets the same provider payout back and records SENT."""
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-1", "p1", 4_000)
        [claimed] = await outbox.claim_batch(p.deps, ["po-1"])
        made = await p.deps.provider.create_payout("po-1", claimed.amount, claimed.currency, claimed.destination)
        assert await pool.fetchval("SELECT status FROM payouts") == "SENDING"  # ... and the runner is gone
        assert (await outbox.run(p.deps)).processed == 0
        assert (await repair.run(p.deps)).processed == 0  # not stuck long enough yet
        p.advance(settings.sending_stuck_minutes + 1)
        summary = await repair.run(p.deps)
        assert (summary.processed, summary.failed) == (1, 0), summary
        row = await pool.fetchrow("SELECT status, provider_payout_id FROM payouts WHERE payout_id = 'po-1'")
        assert (row["status"], row["provider_payout_id"]) == ("SENT", made.id)
        stats = await p.sim_stats()
        assert (stats["payoutsCreated"], stats["idempotentReplays"]) == (1, 1)
        assert len(await p.sim_payouts()) == 1
        assert (await repair.run(p.deps)).processed == 0
        await assert_money_invariants(pool)


async def test_lost_create_answer_is_resent_with_the_same_key(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, sim={"dropAfterCreateRate": 1.0}) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-1", "p1", 4_000)
        summary = await outbox.run(p.deps)  # created at the provider, but the answer was lost
        assert summary.details == {"retry": 1}
        assert await pool.fetchval("SELECT status FROM payouts") == "REQUESTED"
        await p.sim_config(dropAfterCreateRate=0.0)
        p.advance(30)
        assert (await outbox.run(p.deps)).details == {"sent": 1}  # resend with the same key: the same payout
        stats = await p.sim_stats()
        assert (stats["payoutsCreated"], stats["idempotentReplays"]) == (1, 1)
        assert (await repair.run(p.deps)).processed == 0



async def test_idempotency_key_collision_quarantines_never_refunds(pool: asyncpg.Pool, settings: Settings) -> None:
    """The provider already holds a payout under our id with other parameters: a payout may exist for
    this id, so the funds must stay reserved and a human must look (never fail-and-refund)."""
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-clash", "p1", 4_000)
        await p.deps.provider.create_payout("po-clash", 999, "USD", "ba_someone_else")
        summary = await outbox.run(p.deps)
        assert summary.details == {"quarantined": 1}
        row = await pool.fetchrow("SELECT status, funds_returned FROM payouts WHERE payout_id = 'po-clash'")
        assert (row["status"], row["funds_returned"]) == ("QUARANTINED", False)
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'inflight:p1'") == 4_000
        assert (await outbox.run(p.deps)).processed == 0
        await assert_money_invariants(pool)


async def test_rejected_payout_is_abandoned_with_an_alert(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, sim={"rejectCreateRate": 1.0}) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-bad", "p1", 4_000)
        assert (await outbox.run(p.deps)).details == {"rejected": 1}
        row = await pool.fetchrow("SELECT status, funds_returned FROM payouts WHERE payout_id = 'po-bad'")
        assert (row["status"], row["funds_returned"]) == ("FAILED", True)
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'payable:p1'") == 10_000
        alert = await pool.fetchrow("SELECT * FROM alerts WHERE code = 'PAYOUT_SEND_ABANDONED'")
        assert (alert["subject"], alert["severity"]) == ("po-bad", "warning")
        assert (await p.sim_stats())["payoutsCreated"] == 0
        await assert_money_invariants(pool)
