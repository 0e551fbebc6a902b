"""A quarantined payout whose create answer was lost (the drill's stuck payout): the provider made it under
our idempotency key (the payout id) and pays it, but our side never recorded SENT, so the payout names no
provider payout. The runbook's commands must bring it home without giving up a safeguard: force-reconcile
and force-finalize ask the provider by our key, record the provider payout they learn and apply its word
with settlement; nothing is paid twice, nothing finalized unless the provider says paid, and a cancel
stays refused while the provider holds the payout. Real parts: PostgreSQL, the simulator over HTTP, the
admin routes."""

from __future__ import annotations

from typing import Any

import asyncpg

from periodya.config import Settings
from periodya.runners import outbox, reconcile, webhooks
from tests.integration.invariants import assert_money_invariants
from tests.integration.pipeline import Pipeline, live_pipeline, wait_for

PID = "po-lost"


async def _balance(pool: asyncpg.Pool, account: str) -> int:
    return int(await pool.fetchval("SELECT coalesce(sum(balance), 0) FROM balances WHERE account = $1", account))


async def _events(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events"))


async def _row(pool: asyncpg.Pool) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT status, provider_payout_id, ledger_finalized FROM payouts "
                              "WHERE payout_id = $1", PID)
    return dict(row)


async def _lost_answer_then_quarantined(p: Pipeline) -> str:
    """Request 3,000 of p1's 10,000; the outbox's create reaches the provider but its answer is dropped;
    an operator quarantines the payout. Returns the provider payout the provider holds for it."""
    await p.fund_payee("p1", 10_000)
    await p.request(PID, "p1", 3_000)
    await p.sim_config(dropAfterCreateRate=1.0)
    assert (await outbox.run(p.deps)).details == {"retry": 1}
    await p.sim_config(dropAfterCreateRate=0.0)
    status, body = await p.admin("POST", f"/api/admin/ops/payouts/{PID}/quarantine", json={"reason": "fraud?"})
    assert status == 200 and body["status"] == "QUARANTINED" and body["providerPayoutId"] is None, body
    held = await p.sim_payouts()
    assert [h["metadata"]["payout_id"] for h in held] == [PID]
    return str(held[0]["id"])


async def _post(p: Pipeline, action: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    return await p.admin("POST", f"/api/admin/ops/payouts/{PID}/{action}", **kwargs)


async def test_force_reconcile_then_force_finalize_bring_home_a_paid_payout_whose_webhook_was_lost(
        pool: asyncpg.Pool, settings: Settings) -> None:
    """The drill's case: the paid webhook never arrives. The jobs leave a quarantined payout alone; the
    operator's force-reconcile learns the provider payout by our key and records it paid (still
    QUARANTINED, the ledger untouched), then force-finalize moves the funds."""
    async with live_pipeline(pool, settings, sim={"webhookDropRate": 1.0}) as p:
        ppid = await _lost_answer_then_quarantined(p)
        await p.settle(ppid, "paid")
        p.advance(settings.sent_stuck_minutes + settings.sending_stuck_minutes + 1)
        await webhooks.run(p.deps)
        await reconcile.run(p.deps)
        status, body = await _post(p, "cancel", json={"reason": "operator"})
        assert (status, body["code"]) == (409, "INVALID_STATE"), body  # the provider holds it: no money back

        status, body = await _post(p, "force-reconcile")
        assert status == 200, body
        assert (body["status"], body["providerPayoutId"]) == ("QUARANTINED", ppid), body
        assert await _row(pool) == {"status": "QUARANTINED", "provider_payout_id": ppid, "ledger_finalized": False}
        assert await _balance(pool, "inflight:p1") == 3_000

        status, body = await _post(p, "force-finalize")
        assert status == 200 and body["status"] == "FINALIZED", body
        assert await _row(pool) == {"status": "FINALIZED", "provider_payout_id": ppid, "ledger_finalized": True}
        assert (await _balance(pool, "inflight:p1"), await _balance(pool, "payable:p1")) == (0, 7_000)
        before = await _events(pool)
        status, body = await _post(p, "force-finalize")  # a repeat writes nothing
        assert status == 200 and body["status"] == "FINALIZED"
        assert await _events(pool) == before
        assert (await p.sim_stats())["payoutsCreated"] == 1  # never a second provider payout
        await assert_money_invariants(pool)


async def test_force_finalize_alone_learns_the_provider_payout_by_our_key(
        pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, sim={"webhookDropRate": 1.0}) as p:
        ppid = await _lost_answer_then_quarantined(p)
        await p.settle(ppid, "paid")
        status, body = await _post(p, "force-finalize")
        assert status == 200 and (body["status"], body["providerPayoutId"]) == ("FINALIZED", ppid), body
        assert (await _balance(pool, "inflight:p1"), await _balance(pool, "payable:p1")) == (0, 7_000)
        assert await pool.fetchval("SELECT metadata->>'actor' FROM events WHERE event_type = 'PayoutFinalized'") == (
            "admin:ops@example.com")
        await assert_money_invariants(pool)


async def test_force_finalize_refused_while_the_payout_found_by_our_key_is_pending(
        pool: asyncpg.Pool, settings: Settings) -> None:
    """Found, but not paid yet: force-finalize writes nothing. Force-reconcile records the provider payout
    it learns; the paid webhook that follows is then applied, and force-finalize settles it."""
    async with live_pipeline(pool, settings, sim={"webhookDropRate": 1.0}) as p:
        ppid = await _lost_answer_then_quarantined(p)
        before = await _events(pool)
        status, body = await _post(p, "force-finalize")
        assert (status, body["code"]) == (409, "INVALID_STATE"), body
        assert body["detail"] == (f"payout {PID} is QUARANTINED: force-finalize is not allowed "
                                  "(the provider says pending)")
        assert await _events(pool) == before

        status, body = await _post(p, "force-reconcile")
        assert status == 200 and (body["status"], body["providerPayoutId"]) == ("QUARANTINED", ppid), body
        await p.sim_config(webhookDropRate=0.0)
        await p.settle(ppid, "paid")
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
        assert (await webhooks.run(p.deps)).details == {"applied": 1}
        assert await _row(pool) == {"status": "QUARANTINED", "provider_payout_id": ppid, "ledger_finalized": False}
        status, body = await _post(p, "force-finalize")
        assert status == 200 and body["status"] == "FINALIZED", body
        await assert_money_invariants(pool)


async def test_a_paid_webhook_naming_our_payout_id_is_recorded_on_a_quarantined_payout(
        pool: asyncpg.Pool, settings: Settings) -> None:
    """The webhook names the provider payout we never recorded, and our payout id in its metadata: the
    webhooks job records both facts (the payout stays QUARANTINED); force-finalize then settles it."""
    async with live_pipeline(pool, settings) as p:
        ppid = await _lost_answer_then_quarantined(p)
        await p.settle(ppid, "paid")
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
        assert (await webhooks.run(p.deps)).details == {"applied": 1}
        assert await _row(pool) == {"status": "QUARANTINED", "provider_payout_id": ppid, "ledger_finalized": False}
        status, body = await _post(p, "force-finalize")
        assert status == 200 and body["status"] == "FINALIZED", body
        await assert_money_invariants(pool)


async def test_force_reconcile_returns_the_funds_when_the_payout_found_by_our_key_failed(
        pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, sim={"webhookDropRate": 1.0}) as p:
        ppid = await _lost_answer_then_quarantined(p)
        await p.settle(ppid, "failed")
        status, body = await _post(p, "force-finalize")
        assert (status, body["code"]) == (409, "INVALID_STATE"), body  # never finalized unless paid
        status, body = await _post(p, "force-reconcile")
        assert status == 200 and (body["status"], body["providerPayoutId"]) == ("FAILED", ppid), body
        assert (await _balance(pool, "inflight:p1"), await _balance(pool, "payable:p1")) == (0, 10_000)
        await assert_money_invariants(pool)


async def test_force_reconcile_refused_when_the_provider_holds_none_for_our_key(
        pool: asyncpg.Pool, settings: Settings) -> None:
    """A send was attempted but nothing was made (a 500 before acting): force-reconcile says so and writes
    nothing; the cancel it points to then returns the funds."""
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request(PID, "p1", 3_000)
        await p.sim_config(errorRate=1.0)
        assert (await outbox.run(p.deps)).details == {"retry": 1}
        await p.sim_config(errorRate=0.0)
        status, _ = await _post(p, "quarantine", json={"reason": "fraud?"})
        assert status == 200
        before = await _events(pool)
        for action in ("force-reconcile", "force-finalize"):
            status, body = await _post(p, action)
            assert (status, body["code"]) == (409, "INVALID_STATE"), body
            assert body["detail"] == (f"payout {PID} is QUARANTINED: {action} is not allowed "
                                      "(the provider holds no payout for it)")
        assert await _events(pool) == before
        status, body = await _post(p, "cancel", json={"reason": "operator"})
        assert status == 200 and body["status"] == "CANCELLED", body
        assert await _balance(pool, "payable:p1") == 10_000
        await assert_money_invariants(pool)
