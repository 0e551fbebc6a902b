"""Every incident playbook of the runbook (/work/shared/runbook.md, section 3), drilled against REAL
processes: `periodya provider-sim`, `periodya serve`, runners as `periodya run JOB` processes (some
SIGKILLed at a fault checkpoint) or as the cron runner calls them (POST /api/admin/ops/run/* with the
cron secret), and an admin created with `periodya admin create-user` and logged in over HTTP.

Each test induces the incident, sees the symptom in GET /api/admin/ops/health and /alerts as the
runbook describes it, follows the runbook's action over HTTP, and sees health back to the runbook's
daily expectations (section 2). Thresholds are shortened to 1.2 s (PERIODYA_*_MINUTES=0.02).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import asyncpg

from periodya.provider.signing import sign
from tests.e2e.procs import ADMIN_EMAIL, System, eventually, running_system

HEALTHY = {"status": "ok", "payoutOutboxSendingStuck": 0, "providerPayoutSentStuck10m": 0,
           "integrityAlertsCriticalOpen": 0}
ADMIN_ACTOR = f"admin:{ADMIN_EMAIL}"


def subset(health: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {k: health[k] for k in expected}


async def assert_healthy(system: System) -> dict[str, Any]:
    health = await system.health()
    assert subset(health, HEALTHY) == HEALTHY, health
    return health


async def funded_payout(system: System, payee: str, funded: int, amount: int) -> dict[str, Any]:
    await system.fund_payee(payee, funded)
    payout = await system.request_payout(payee, amount)
    assert payout["status"] == "REQUESTED" and payout["outbox"]["status"] == "PENDING", payout
    return payout


async def cash_held(pool: asyncpg.Pool, currency: str = "USD") -> int:
    """The cash the platform holds at the provider: minus the cash account's balance (accounts.py)."""
    return -int(await pool.fetchval("SELECT balance FROM balances WHERE account = 'cash:platform' AND currency = $1",
                                    currency))


async def settle_and_apply(system: System, provider_payout_id: str) -> None:
    """The provider pays; its webhook arrives and the webhooks job applies it."""
    await system.settle(provider_payout_id, "paid")
    await eventually(lambda: _webhooks_pending(system, 1), "the paid webhook to be stored")
    summary = await system.cron("webhooks")
    assert summary["outcomes"] == {"applied": 1}, summary


async def _webhooks_pending(system: System, n: int) -> bool:
    return bool((await system.health())["webhooksPending"] == n)


# --- FINALIZE_MISSING --------------------------------------------------------------------------------

async def test_finalize_missing_after_webhooks_runner_killed(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                             tmp_path: Path) -> None:
    """Provider paid, webhook stored, the webhooks runner SIGKILLed before applying it: after the grace the
    sentinel raises CRITICAL FINALIZE_MISSING; force-finalize by providerPayoutId, ack, resolve: healthy."""
    # SENT stuck at its default (10 min) so the symptom is FINALIZE_MISSING alone, as in production
    # where the 5-minute grace passes before the 10-minute SENT threshold.
    async with running_system(database_url, tmp_path, sim_url=sim_url,
                              env={"PERIODYA_SENT_STUCK_MINUTES": "10"}) as system:
        payout = await funded_payout(system, "payee-fm", 10_000, 4_000)
        pid = payout["payoutId"]
        sent = await system.run("outbox")
        assert sent["outcomes"] == {"sent": 1}, sent
        ppid = (await system.payout(pid))["providerPayoutId"]
        assert ppid

        await system.settle(ppid, "paid")  # the provider pays and sends the webhook
        await eventually(lambda: _webhooks_pending(system, 1), "the paid webhook to be stored")
        runner, event_id = await system.paused("before_webhook_apply", "webhooks")
        assert await runner.kill() < 0  # SIGKILL between "provider paid" (stored) and the finalize
        after_crash = await system.payout(pid)
        assert (after_crash["status"], after_crash["ledgerFinalized"]) == ("SENT", False), after_crash
        assert (await system.health())["webhooksPending"] == 1  # stored, never applied
        assert await pool.fetchval("SELECT applied_seq IS NULL AND status = 'paid' FROM provider_events "
                                   "WHERE event_id = $1 AND provider_payout_id = $2", event_id, ppid)

        await eventually(lambda: _finalize_missing_after_sentinel(system), "FINALIZE_MISSING to be raised")
        health = await system.health()
        assert health["status"] == "critical" and health["integrityAlertsCriticalOpen"] == 1, health
        [missing] = health["finalizeMissing"]
        assert (missing["payoutId"], missing["providerPayoutId"]) == (pid, ppid), missing
        assert missing["alertId"] and missing["since"]
        [alert] = await system.alerts("?severity=critical&status=OPEN")
        assert (alert["alertId"], alert["code"], alert["subject"]) == (missing["alertId"], "FINALIZE_MISSING", pid)
        assert "force-finalize" in alert["remedy"], alert

        # Runbook step 2: force-finalize the providerPayoutId health named.
        status, body = await system.admin("POST", f"/api/admin/ops/payouts/{ppid}/force-finalize",
                                          headers={"X-Request-Id": "drill-force-finalize"})
        assert status == 200 and body["status"] == "FINALIZED" and body["ledgerFinalized"], body
        status, again = await system.admin("POST", f"/api/admin/ops/payouts/{ppid}/force-finalize")
        assert status == 200 and again["updatedAt"] == body["updatedAt"], again  # nothing new written
        # Step 3: acknowledge and resolve.
        for action in ("ack", "resolve"):
            status, alert = await system.admin("POST", f"/api/admin/ops/alerts/{missing['alertId']}/{action}",
                                               json={"note": "finalized per runbook"})
            assert status == 200, alert
        assert (alert["status"], alert["ackedBy"], alert["resolvedBy"]) == ("RESOLVED", ADMIN_ACTOR, ADMIN_ACTOR)
        health = await assert_healthy(system)
        assert health["finalizeMissing"] == []

        # The money: the payee's 4,000 left, 6,000 still available; the platform's cash went down by 4,000.
        assert await system.balances("payee-fm") == {"USD": {"available": 6_000, "inFlight": 0}}
        assert await cash_held(pool) == 6_000
        finalized = [e for e in await system.payout_events(pid) if e["type"] == "PayoutFinalized"]
        assert len(finalized) == 1, finalized
        assert finalized[0]["metadata"]["actor"] == ADMIN_ACTOR
        assert finalized[0]["metadata"]["requestId"] == "drill-force-finalize"

        # The stored webhook, applied late, changes nothing: no second finalize, no money moves.
        late = await system.cron("webhooks")
        assert late["outcomes"] == {"no_change": 1}, late
        assert await cash_held(pool) == 6_000
        assert [e["type"] for e in await system.payout_events(pid)].count("PayoutFinalized") == 1
        summary = await system.cron("sentinel", "?mode=full")
        assert summary["failed"] == 0 and not any(k.startswith("raised:") for k in summary["outcomes"]), summary
        await assert_healthy(system)


async def _finalize_missing_after_sentinel(system: System) -> bool:
    summary = await system.cron("sentinel", "?mode=recent")
    assert summary["failed"] == 0, summary
    return bool((await system.health())["finalizeMissing"])


# --- Outbox stuck SENDING ----------------------------------------------------------------------------

async def _killed_after_provider_accept(system: System, pool: asyncpg.Pool, pid: str) -> str:
    """The outbox runner process dies between the provider's acceptance and recording SENT."""
    runner, provider_id = await system.paused("after_provider_accept", "outbox")
    assert await runner.kill() < 0
    view = await system.payout(pid)
    assert (view["status"], view["providerPayoutId"], view["outbox"]["status"]) == ("SENDING", None, "SENDING")
    assert [p["id"] for p in await system.sim_payouts()] == [provider_id]
    health = await eventually(lambda: _sending_stuck(system), "payoutOutboxSendingStuck > 0")
    assert health["payoutOutboxSendingStuck"] == 1 and health["status"] != "ok", health
    assert health["maxOutboxAgeMinutes"] > health["thresholds"]["sendingStuckMinutes"], health
    return provider_id


async def _sending_stuck(system: System) -> dict[str, Any] | None:
    health = await system.health()
    return health if health["payoutOutboxSendingStuck"] > 0 else None


async def _exactly_one_provider_payout(system: System, pid: str, provider_id: str) -> None:
    payouts = await system.sim_payouts()
    assert [(p["id"], p["metadata"]["payout_id"]) for p in payouts] == [(provider_id, pid)], payouts
    stats = await system.sim_stats()
    assert (stats["payoutsCreated"], stats["idempotentReplays"]) == (1, 1), stats


async def test_outbox_stuck_sending_self_heals_by_repair(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                         tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        pid = (await funded_payout(system, "payee-os", 10_000, 2_500))["payoutId"]
        provider_id = await _killed_after_provider_accept(system, pool, pid)

        summary = await system.cron("repair")  # runbook action 1: the Stuck Repair job
        assert summary["outcomes"] == {"sent": 1} and summary["failed"] == 0, summary
        view = await system.payout(pid)
        assert (view["status"], view["providerPayoutId"]) == ("SENT", provider_id), view
        assert (await system.health())["payoutOutboxSendingStuck"] == 0
        await _exactly_one_provider_payout(system, pid, provider_id)

        await settle_and_apply(system, provider_id)
        assert (await system.payout(pid))["status"] == "FINALIZED"
        await assert_healthy(system)
        assert await system.balances("payee-os") == {"USD": {"available": 7_500, "inFlight": 0}}
        assert await cash_held(pool) == 7_500
        await _exactly_one_provider_payout(system, pid, provider_id)


async def test_outbox_stuck_sending_manual_rerun(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                 tmp_path: Path) -> None:
    """Runbook action 2: the operator finds the payout (OUTBOX_STUCK alert) and reruns its outbox task."""
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        pid = (await funded_payout(system, "payee-rr", 10_000, 3_000))["payoutId"]
        provider_id = await _killed_after_provider_accept(system, pool, pid)

        summary = await system.cron("sentinel", "?mode=recent")
        assert summary["outcomes"].get("raised:OUTBOX_STUCK") == 1, summary
        [alert] = await system.alerts("?code=OUTBOX_STUCK&status=OPEN")
        assert alert["details"]["payoutId"] == pid and "rerun-outbox" in alert["remedy"], alert
        # The runbook's path names {providerPayoutId}, but a payout stuck in SENDING has none recorded
        # (that is the incident): the provider's id is unknown to us, and the payoutId is what works.
        status, body = await system.admin("POST", f"/api/admin/ops/payouts/{provider_id}/rerun-outbox")
        assert status == 404 and body["code"] == "NOT_FOUND", body
        status, body = await system.admin("POST", f"/api/admin/ops/payouts/{pid}/rerun-outbox")
        assert status == 200 and body["status"] == "REQUESTED" and body["outbox"]["status"] == "PENDING", body
        # Issue 11 (7): the rerun took the task out of SENDING, so its alert closed with it, by "system".
        [alert] = await system.alerts("?code=OUTBOX_STUCK")
        assert (alert["status"], alert["resolvedBy"], alert["automatic"]) == ("RESOLVED", "system", True), alert

        summary = await system.cron("outbox")  # same idempotency key: the provider replays, nothing new
        assert summary["outcomes"] == {"sent": 1}, summary
        view = await system.payout(pid)
        assert (view["status"], view["providerPayoutId"]) == ("SENT", provider_id), view
        await _exactly_one_provider_payout(system, pid, provider_id)
        rerun = [e for e in await system.payout_events(pid) if e["type"] == "PayoutRequeued"]
        assert len(rerun) == 1 and rerun[0]["metadata"]["actor"] == ADMIN_ACTOR, rerun

        await settle_and_apply(system, provider_id)
        summary = await system.cron("sentinel", "?mode=recent")
        assert summary["outcomes"].get("resolved:OUTBOX_STUCK") is None, summary  # closed at the rerun already
        await assert_healthy(system)
        assert await system.balances("payee-rr") == {"USD": {"available": 7_000, "inFlight": 0}}
        await _exactly_one_provider_payout(system, pid, provider_id)


# --- SENT stuck without webhook ----------------------------------------------------------------------

async def _sent_then_paid_without_webhook(system: System, pool: asyncpg.Pool, payee: str) -> tuple[str, str]:
    pid = (await funded_payout(system, payee, 10_000, 1_000))["payoutId"]
    summary = await system.run("outbox")
    assert summary["outcomes"] == {"sent": 1}, summary
    ppid = (await system.payout(pid))["providerPayoutId"]
    await system.settle(ppid, "paid")  # the provider pays; its webhook never makes it
    health = await eventually(lambda: _sent_stuck(system), "providerPayoutSentStuck10m > 0")
    assert health["providerPayoutSentStuck10m"] == 1 and health["status"] == "degraded", health
    assert await pool.fetchval("SELECT count(*) FROM provider_events") == 0  # nothing stored
    return pid, ppid


async def _sent_stuck(system: System) -> dict[str, Any] | None:
    health = await system.health()
    return health if health["providerPayoutSentStuck10m"] > 0 else None


async def test_sent_stuck_webhook_dropped_self_heals_by_reconcile_pull(database_url: str, pool: asyncpg.Pool,
                                                                       sim_url: str, tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url, sim={"webhookDropRate": 1.0}) as system:
        pid, _ = await _sent_then_paid_without_webhook(system, pool, "payee-wd")
        assert (await system.sim_stats())["webhooksDropped"] == 1

        summary = await system.cron("reconcile-pull")  # runbook action 1
        assert summary["outcomes"] == {"paid": 1} and summary["failed"] == 0, summary
        view = await system.payout(pid)
        assert (view["status"], view["ledgerFinalized"]) == ("FINALIZED", True), view
        await assert_healthy(system)
        assert await system.balances("payee-wd") == {"USD": {"available": 9_000, "inFlight": 0}}
        assert await cash_held(pool) == 9_000


async def test_sent_stuck_bad_signature_force_reconcile(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                        tmp_path: Path) -> None:
    """The webhook is refused (bad signature: 400, nothing stored); the operator force-reconciles."""
    async with running_system(database_url, tmp_path, sim_url=sim_url, sim={"badSignatureRate": 1.0}) as system:
        pid, ppid = await _sent_then_paid_without_webhook(system, pool, "payee-bs")
        stats = await eventually(lambda: _refused(system), "the bad-signature webhook to be refused")
        assert stats["badSignaturesSent"] == 1 and stats["webhooksFailed"] == 1, stats
        assert (await system.health())["webhooksPending"] == 0
        # What the server answered it: the same event, signed with the wrong secret, is a 400, nothing stored.
        [event] = [e for e in await _sim_events(system) if e["data"]["object"]["id"] == ppid]
        raw = json.dumps(event).encode()
        forged = sign(raw, "whsec_not_the_secret", int(time.time()))
        status, body = await system.call("POST", "/api/webhooks/provider", None, data=raw,
                                         headers={"Content-Type": "application/json", "Stripe-Signature": forged})
        assert status == 400 and body["code"], body
        assert await pool.fetchval("SELECT count(*) FROM provider_events") == 0

        # Runbook action 2, by the providerPayoutId.
        status, body = await system.admin("POST", f"/api/admin/ops/payouts/{ppid}/force-reconcile")
        assert status == 200 and body["status"] == "FINALIZED" and body["ledgerFinalized"], body
        meta = [e["metadata"] for e in await system.payout_events(pid) if e["type"] == "PayoutFinalized"]
        assert len(meta) == 1 and meta[0]["actor"] == ADMIN_ACTOR and meta[0]["requestId"], meta
        await assert_healthy(system)
        assert await system.balances("payee-bs") == {"USD": {"available": 9_000, "inFlight": 0}}
        # Reconcile-pull afterwards has nothing to do.
        assert (await system.cron("reconcile-pull"))["processed"] == 0


async def _sim_events(system: System) -> list[dict[str, Any]]:
    async with system.http.get(f"{system.sim}/_sim/events") as r:
        return (await r.json())["data"]  # type: ignore[no-any-return]


async def _refused(system: System) -> dict[str, int] | None:
    stats = await system.sim_stats()
    return stats if stats["webhooksFailed"] else None


# --- LEDGER_UNBALANCED -------------------------------------------------------------------------------

async def test_ledger_unbalanced_is_never_auto_resolved(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                        tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        await system.fund_payee("payee-lu", 10_000, fee=500)
        await assert_healthy(system)
        group = await pool.fetchval("SELECT group_id FROM ledger_entries WHERE account = 'payable:payee-lu'")
        # Someone edits the ledger view behind the application's back.
        await pool.execute("UPDATE ledger_entries SET credit = credit + 1 WHERE account = 'payable:payee-lu'")

        summary = await system.cron("sentinel", "?mode=full")
        assert summary["outcomes"].get("raised:LEDGER_UNBALANCED") == 1 and summary["failed"] == 0, summary
        health = await system.health()
        assert health["status"] == "critical" and health["integrityAlertsCriticalOpen"] == 1, health
        [alert] = await system.alerts("?code=LEDGER_UNBALANCED&severity=critical")
        assert alert["status"] == "OPEN" and alert["severity"] == "critical", alert
        assert "DO NOT attempt automated repair" in alert["remedy"], alert
        assert "Notify Senior Engineering" in alert["remedy"], alert
        # "Isolate the exact LedgerGroup": the alert names it, with its debits and credits.
        assert alert["subject"] == f"group:{group}" and alert["details"]["groupId"] == group, alert
        details = alert["details"]
        assert int(details["credits"]) == int(details["debits"]) + 1 == 10_501, details

        # The row is put back; the sentinel must still not close it: only a human does.
        await pool.execute("UPDATE ledger_entries SET credit = credit - 1 WHERE account = 'payable:payee-lu'")
        for mode in ("full", "recent"):
            summary = await system.cron("sentinel", f"?mode={mode}")
            assert not any(k.startswith("resolved:") for k in summary["outcomes"]), summary
        [still] = await system.alerts("?code=LEDGER_UNBALANCED")
        assert (still["status"], still["resolvedAt"]) == ("OPEN", None), still
        assert (await system.health())["integrityAlertsCriticalOpen"] == 1

        for action in ("ack", "resolve"):
            status, alert = await system.admin("POST", f"/api/admin/ops/alerts/{still['alertId']}/{action}",
                                               json={"note": "verified by senior engineering"})
            assert status == 200, alert
        assert (alert["status"], alert["resolvedBy"], alert["automatic"]) == ("RESOLVED", ADMIN_ACTOR, False)
        await assert_healthy(system)


# --- Quarantining a suspicious payout ----------------------------------------------------------------

async def test_quarantine_suspicious_payout_then_cancel(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                        tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        pid = (await funded_payout(system, "payee-q", 10_000, 3_000))["payoutId"]
        assert await system.balances("payee-q") == {"USD": {"available": 7_000, "inFlight": 3_000}}
        status, body = await system.admin("POST", f"/api/admin/ops/payouts/{pid}/quarantine",
                                          json={"reason": "Suspected fraud"}, headers={"X-Request-Id": "drill-q-1"})
        assert status == 200, body
        assert (body["status"], body["outbox"]["status"], body["quarantineReason"]) == (
            "QUARANTINED", "FAILED", "Suspected fraud"), body

        for _ in range(2):  # the outbox never sends it, by endpoint or by process
            summary = await system.cron("outbox")
            assert summary["processed"] == 0, summary
        assert (await system.run("outbox"))["processed"] == 0
        assert (await system.sim_stats())["payoutsCreated"] == 0
        assert (await system.payout(pid))["status"] == "QUARANTINED"
        assert (await system.health())["payoutOutboxPending"] == 0

        [event] = [e for e in await system.payout_events(pid) if e["type"] == "PayoutQuarantined"]
        assert event["data"]["reason"] == "Suspected fraud"
        meta = event["metadata"]
        assert (meta["actor"], meta["reason"], meta["requestId"]) == (ADMIN_ACTOR, "Suspected fraud", "drill-q-1")

        status, body = await system.admin("POST", f"/api/admin/ops/payouts/{pid}/cancel",
                                          json={"reason": "confirmed fraud"})
        assert status == 200 and body["status"] == "CANCELLED" and body["fundsReturned"], body
        assert await system.balances("payee-q") == {"USD": {"available": 10_000, "inFlight": 0}}
        assert await cash_held(pool) == 10_000
        assert (await system.sim_stats())["payoutsCreated"] == 0
        await assert_healthy(system)


async def test_quarantine_sent_payout_by_provider_id(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                     tmp_path: Path) -> None:
    """As the runbook writes it, by providerPayoutId: a payout already at the provider. Its outbox task
    fails, cancel is refused (the provider has it: returning funds could create money), and when the
    provider pays anyway the FINALIZE_MISSING playbook settles it."""
    async with running_system(database_url, tmp_path, sim_url=sim_url,
                              env={"PERIODYA_SENT_STUCK_MINUTES": "10"}) as system:
        pid = (await funded_payout(system, "payee-qs", 10_000, 2_000))["payoutId"]
        assert (await system.cron("outbox"))["outcomes"] == {"sent": 1}
        ppid = (await system.payout(pid))["providerPayoutId"]
        status, body = await system.admin("POST", f"/api/admin/ops/payouts/{ppid}/quarantine",
                                          json={"reason": "Suspected fraud"})
        assert status == 200 and (body["status"], body["outbox"]["status"]) == ("QUARANTINED", "FAILED"), body
        status, body = await system.admin("POST", f"/api/admin/ops/payouts/{ppid}/cancel",
                                          json={"reason": "confirmed fraud"})
        assert status == 409 and body["code"] == "INVALID_STATE", body
        assert (await system.cron("outbox"))["processed"] == 0
        assert (await system.cron("repair"))["processed"] == 0
        assert (await system.sim_stats())["payoutsCreated"] == 1

        await system.settle(ppid, "paid")
        await eventually(lambda: _webhooks_pending(system, 1), "the paid webhook to be stored")
        await system.cron("webhooks")
        view = await system.payout(pid)
        assert (view["status"], view["providerStatus"], view["ledgerFinalized"]) == ("QUARANTINED", "paid", False)
        await eventually(lambda: _finalize_missing_after_sentinel(system), "FINALIZE_MISSING to be raised")
        [missing] = (await system.health())["finalizeMissing"]
        assert missing["providerPayoutId"] == ppid
        status, body = await system.admin("POST", f"/api/admin/ops/payouts/{ppid}/force-finalize")
        assert status == 200 and body["ledgerFinalized"], body
        for action in ("ack", "resolve"):
            status, _ = await system.admin("POST", f"/api/admin/ops/alerts/{missing['alertId']}/{action}")
            assert status == 200
        await assert_healthy(system)
        assert await system.balances("payee-qs") == {"USD": {"available": 8_000, "inFlight": 0}}
        assert await cash_held(pool) == 8_000


async def test_ledger_unbalanced_details_are_integer_amounts(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                             tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url, admin=True) as system:
        await system.fund_payee("payee-li", 10_000)
        await pool.execute("UPDATE ledger_entries SET credit = credit + 1 WHERE account = 'payable:payee-li'")
        await system.cron("sentinel", "?mode=full")
        [alert] = await system.alerts("?code=LEDGER_UNBALANCED")
        assert (alert["details"]["debits"], alert["details"]["credits"]) == (10_000, 10_001), alert["details"]
