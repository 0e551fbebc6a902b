"""The refusal branch of every operator safeguard (runbook section 4), through the admin HTTP routes with
the real provider simulator: force-finalize unless the provider says paid, cancel after a send unless the
provider definitely holds none, force-reconcile reports a provider that errs or times out, quarantine
by status. A refusal is a 409 INVALID_STATE that writes nothing and moves no money."""

from __future__ import annotations

from typing import Any

import asyncpg

from periodya.config import Settings
from periodya.domain import payout
from periodya.domain.errors import InvalidState
from periodya.handlers import lifecycle
from periodya.handlers import operator_actions as ops
from periodya.handlers.unit_of_work import run_command
from periodya.runners import outbox
from tests.integration.invariants import assert_money_invariants
from tests.integration.pipeline import META, Pipeline, live_pipeline


async def _payable(pool: asyncpg.Pool, payee: str = "p1") -> int:
    return int(await pool.fetchval("SELECT balance FROM balances WHERE account = $1", f"payable:{payee}"))


async def _events(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events"))


async def _refused(p: Pipeline, path: str, **kwargs: Any) -> dict[str, Any]:
    """The command answers 409 INVALID_STATE and appends no event."""
    await p.admin("GET", "/api/admin/ops/health")  # the admin user is created on first use
    before = await _events(p.store.pool)
    status, body = await p.admin("POST", path, **kwargs)
    assert (status, body.get("code")) == (409, "INVALID_STATE"), body
    assert await _events(p.store.pool) == before
    return body  # type: ignore[no-any-return]


async def _sent(p: Pipeline, payout_id: str, amount: int = 4_000) -> str:
    """Fund p1, request the payout, send it: SENT at the provider (pending there)."""
    await p.fund_payee("p1", 10_000)
    await p.request(payout_id, "p1", amount)
    assert (await outbox.run(p.deps)).details == {"sent": 1}
    ppid = await p.store.pool.fetchval("SELECT provider_payout_id FROM payouts WHERE payout_id = $1", payout_id)
    assert isinstance(ppid, str)
    return ppid


async def _payout(p: Pipeline, payout_id: str) -> dict[str, Any]:
    row = await p.store.pool.fetchrow("SELECT status, ledger_finalized FROM payouts WHERE payout_id = $1", payout_id)
    return dict(row)


# --- force-finalize -----------------------------------------------------------------------------------


async def test_force_finalize_refused_while_the_provider_says_pending(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await _sent(p, "po-f")
        body = await _refused(p, "/api/admin/ops/payouts/po-f/force-finalize")
        assert body["detail"] == "payout po-f is SENT: force-finalize is not allowed (the provider says pending)"
        assert await _payout(p, "po-f") == {"status": "SENT", "ledger_finalized": False}
        assert await _payable(pool) == 6_000
        await assert_money_invariants(pool)


async def test_force_finalize_refused_when_the_provider_says_failed(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, sim={"webhookDropRate": 1.0}) as p:
        ppid = await _sent(p, "po-f")
        await p.settle(ppid, "failed")
        body = await _refused(p, "/api/admin/ops/payouts/po-f/force-finalize")
        assert body["detail"] == "payout po-f is SENT: force-finalize is not allowed (the provider says failed)"
        assert await _payout(p, "po-f") == {"status": "SENT", "ledger_finalized": False}
        await assert_money_invariants(pool)


async def test_force_finalize_refused_when_the_provider_has_no_such_payout(
        pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await _sent(p, "po-f")
        async with p.http.post(f"{p.sim_url}/_sim/reset") as r:  # the provider forgets every payout
            assert r.status == 200
        body = await _refused(p, "/api/admin/ops/payouts/po-f/force-finalize")
        assert body["detail"] == ("payout po-f is SENT: force-finalize is not allowed "
                                  "(the provider could not confirm it paid: ProviderNotFound)")
        assert await _payout(p, "po-f") == {"status": "SENT", "ledger_finalized": False}


async def test_force_finalize_refused_when_the_provider_cannot_be_reached(
        pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await _sent(p, "po-f")
        await p.sim_config(errorRate=1.0)
        body = await _refused(p, "/api/admin/ops/payouts/po-f/force-finalize")
        assert body["detail"] == ("payout po-f is SENT: force-finalize is not allowed "
                                  "(the provider could not confirm it paid: ProviderUnavailable)")
        assert await _payout(p, "po-f") == {"status": "SENT", "ledger_finalized": False}


async def test_force_finalize_refused_before_the_provider_accepted_it(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-f", "p1", 4_000)
        body = await _refused(p, "/api/admin/ops/payouts/po-f/force-finalize")
        assert body["detail"] == ("payout po-f is REQUESTED: force-finalize is not allowed "
                                  "(the provider has not accepted it)")
        assert (await p.sim_stats())["payoutsCreated"] == 0


# --- cancel --------------------------------------------------------------------------------------------


async def _quarantined_after_a_failed_send(p: Pipeline, knob: str) -> None:
    """A send whose answer was lost (`knob` at rate 1 for one outbox run), then quarantined."""
    await p.fund_payee("p1", 10_000)
    await p.request("po-c", "p1", 3_000)
    await p.sim_config(**{knob: 1.0})
    assert (await outbox.run(p.deps)).details == {"retry": 1}
    await p.sim_config(**{knob: 0.0})
    status, body = await p.admin("POST", "/api/admin/ops/payouts/po-c/quarantine", json={"reason": "lost answer"})
    assert status == 200 and body["status"] == "QUARANTINED", body
    assert body["providerPayoutId"] is None


async def test_cancel_refused_when_the_provider_holds_the_payout(pool: asyncpg.Pool, settings: Settings) -> None:
    """The create reached the provider but its answer was lost: returning the funds would create money."""
    async with live_pipeline(pool, settings) as p:
        await _quarantined_after_a_failed_send(p, "dropAfterCreateRate")
        assert len(await p.sim_payouts()) == 1
        body = await _refused(p, "/api/admin/ops/payouts/po-c/cancel", json={"reason": "operator"})
        assert body["detail"] == ("payout po-c is QUARANTINED: cancel is not allowed "
                                  "(the payout was handed to the provider)")
        assert await _payout(p, "po-c") == {"status": "QUARANTINED", "ledger_finalized": False}
        assert await _payable(pool) == 7_000
        await assert_money_invariants(pool)


async def test_cancel_allowed_when_the_provider_holds_none(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await _quarantined_after_a_failed_send(p, "errorRate")  # a 500 before anything was made
        assert await p.sim_payouts() == []
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-c/cancel", json={"reason": "operator"})
        assert status == 200 and body["status"] == "CANCELLED" and body["fundsReturned"], body
        assert await _payable(pool) == 10_000
        await assert_money_invariants(pool)


async def test_cancel_refused_when_the_provider_cannot_be_reached(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await _quarantined_after_a_failed_send(p, "errorRate")
        await p.sim_config(errorRate=1.0)
        body = await _refused(p, "/api/admin/ops/payouts/po-c/cancel", json={"reason": "operator"})
        assert body["detail"] == ("payout po-c is QUARANTINED: cancel is not allowed "
                                  "(cannot confirm the provider holds no payout: ProviderUnavailable)")
        assert await _payable(pool) == 7_000
        await p.sim_config(errorRate=0.0)  # the provider answers again: now it may be cancelled
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-c/cancel", json={"reason": "operator"})
        assert status == 200 and body["status"] == "CANCELLED", body
        assert await _payable(pool) == 10_000


async def test_cancel_without_a_send_does_not_ask_the_provider(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-c", "p1", 3_000)
        status, _ = await p.admin("POST", "/api/admin/ops/payouts/po-c/quarantine", json={"reason": "fraud"})
        assert status == 200
        await p.sim_config(errorRate=1.0)  # would refuse the cancel if it were asked
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-c/cancel", json={"reason": "fraud"})
        assert status == 200 and body["status"] == "CANCELLED", body
        assert await _payable(pool) == 10_000


async def test_cancel_refused_for_a_payout_that_was_sent(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await _sent(p, "po-c")
        status, _ = await p.admin("POST", "/api/admin/ops/payouts/po-c/quarantine", json={"reason": "check"})
        assert status == 200
        await _refused(p, "/api/admin/ops/payouts/po-c/cancel", json={"reason": "operator"})
        assert await _payable(pool) == 6_000


async def test_cancel_refused_unless_quarantined(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-c", "p1", 3_000)
        body = await _refused(p, "/api/admin/ops/payouts/po-c/cancel", json={"reason": "operator"})
        assert "quarantined" in body["detail"]
        assert await _payable(pool) == 7_000


# --- force-reconcile -----------------------------------------------------------------------------------


async def test_force_reconcile_reports_a_provider_error(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await _sent(p, "po-r")
        await p.sim_config(errorRate=1.0)
        body = await _refused(p, "/api/admin/ops/payouts/po-r/force-reconcile")
        assert body["detail"] == ("payout po-r is SENT: force-reconcile is not allowed "
                                  "(the provider did not answer: provider_error: ProviderUnavailable)")
        assert await _payout(p, "po-r") == {"status": "SENT", "ledger_finalized": False}


async def test_force_reconcile_reports_a_provider_timeout(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, provider_timeout=0.5) as p:
        await _sent(p, "po-r")
        await p.sim_config(latencyMs=5_000)
        body = await _refused(p, "/api/admin/ops/payouts/po-r/force-reconcile")
        assert body["detail"] == ("payout po-r is SENT: force-reconcile is not allowed "
                                  "(the provider did not answer: provider_error: ProviderUnavailable)")
        assert await _payout(p, "po-r") == {"status": "SENT", "ledger_finalized": False}


async def test_force_reconcile_refused_before_the_provider_accepted_it(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-r", "p1", 3_000)
        body = await _refused(p, "/api/admin/ops/payouts/po-r/force-reconcile")
        assert body["detail"] == ("payout po-r is REQUESTED: force-reconcile is not allowed "
                                  "(the provider has not accepted it yet)")


# --- quarantine of each status -------------------------------------------------------------------------


async def test_quarantine_by_status(pool: asyncpg.Pool, settings: Settings) -> None:
    """Allowed while the payout is not terminal (REQUESTED, SENDING, SENT, PAID), a no-op when already
    QUARANTINED, refused for FINALIZED, FAILED and CANCELLED."""
    async with live_pipeline(pool, settings, sim={"webhookDropRate": 1.0}) as p:
        await p.fund_payee("p1", 100_000)
        names = ("sent", "paid", "finalized", "failed", "sending", "cancelled", "quarantined", "requested")
        for name in names[:4]:
            await p.request(name, "p1", 1_000)
        assert (await outbox.run(p.deps)).details == {"sent": 4}
        ppid = dict(await pool.fetch("SELECT payout_id, provider_payout_id FROM payouts"))
        await p.settle(ppid["finalized"], "paid")
        await p.settle(ppid["failed"], "failed")
        for pid in ("finalized", "failed"):
            status, _ = await p.admin("POST", f"/api/admin/ops/payouts/{pid}/force-reconcile")
            assert status == 200
        await p.settle(ppid["paid"], "paid")  # recorded paid, ledger not finalized yet
        await run_command(p.store, META, lambda u: lifecycle.decide(
            u, "paid", lambda s: payout.decide_provider_paid(s, ppid["paid"], "webhook")))
        for name in names[4:]:
            await p.request(name, "p1", 1_000)
        await outbox.claim_batch(p.deps, ["sending"])  # claimed; the provider is not called
        for pid in ("cancelled", "quarantined"):
            status, _ = await p.admin("POST", f"/api/admin/ops/payouts/{pid}/quarantine", json={"reason": "x"})
            assert status == 200
        status, _ = await p.admin("POST", "/api/admin/ops/payouts/cancelled/cancel", json={"reason": "x"})
        assert status == 200
        statuses = dict(await pool.fetch("SELECT payout_id, status FROM payouts"))
        assert statuses == {name: name.upper() for name in names}, statuses

        for name in ("requested", "sending", "sent", "paid"):
            status, body = await p.admin("POST", f"/api/admin/ops/payouts/{name}/quarantine", json={"reason": "hold"})
            assert status == 200 and body["status"] == "QUARANTINED", (name, body)
        before = await _events(pool)
        status, body = await p.admin("POST", "/api/admin/ops/payouts/quarantined/quarantine", json={"reason": "again"})
        assert status == 200 and body["status"] == "QUARANTINED"
        assert await _events(pool) == before  # a repeat is a no-op
        for name in ("finalized", "failed", "cancelled"):
            await _refused(p, f"/api/admin/ops/payouts/{name}/quarantine", json={"reason": "hold"})
            assert await pool.fetchval("SELECT status FROM payouts WHERE payout_id = $1", name) == name.upper()
        await assert_money_invariants(pool)


# --- rerun-outbox --------------------------------------------------------------------------------------


async def test_rerun_outbox_requeues_a_waiting_payout_now(pool: asyncpg.Pool, settings: Settings) -> None:
    """A payout backing off after a failed send is due again at once; the resend pays once."""
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-o", "p1", 3_000)
        await p.sim_config(errorRate=1.0)
        assert (await outbox.run(p.deps)).details == {"retry": 1}
        await p.sim_config(errorRate=0.0)
        assert (await outbox.run(p.deps)).processed == 0  # backing off
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-o/rerun-outbox")
        assert status == 200 and body["status"] == "REQUESTED", body
        row = await pool.fetchrow("SELECT data, metadata FROM events WHERE event_type = 'PayoutRequeued'")
        assert row["metadata"]["actor"] == "admin:ops@example.com"
        assert row["data"]["reason"] == "rerun-outbox by an operator"
        assert (await outbox.run(p.deps)).details == {"sent": 1}
        assert (await p.sim_stats())["payoutsCreated"] == 1


async def test_rerun_outbox_refused_once_sent(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await _sent(p, "po-o")
        body = await _refused(p, "/api/admin/ops/payouts/po-o/rerun-outbox")
        assert body["detail"] == "payout po-o is SENT: requeue is not allowed"
        assert (await outbox.run(p.deps)).processed == 0


# --- an unknown payout, called directly (the routes answer 404 before the command runs) -----------------


async def test_commands_on_an_absent_payout_are_refused(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        async def refused(command: Any) -> str:
            try:
                await run_command(p.store, META, command)
            except InvalidState as exc:
                return str(exc)
            raise AssertionError("not refused")

        assert await refused(lambda u: ops.force_finalize(p.deps, u, "po-none")) == (
            "payout is absent: force-finalize is not allowed")
        assert await refused(lambda u: ops.cancel(p.deps, u, "po-none", "x")) == (
            "payout is absent: cancel is not allowed")
        assert await refused(lambda u: ops.force_reconcile(p.deps, u, "po-none")) == (
            "payout po-none is absent: force-reconcile is not allowed (the provider has not accepted it yet)")
        assert await _events(pool) == 0  # nothing written
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-none/force-finalize")
        assert (status, body["code"]) == (404, "NOT_FOUND")
