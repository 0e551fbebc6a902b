"""The runbook's incidents in-process: symptom in health and alerts, the runbook's action, health back."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from periodya.config import Settings
from periodya.runners import outbox, sentinel, webhooks
from tests.integration.invariants import assert_money_invariants
from tests.integration.pipeline import Pipeline, live_pipeline, wait_for

HEALTHY = {"status": "ok", "payoutOutboxSendingStuck": 0, "providerPayoutSentStuck10m": 0,
           "integrityAlertsCriticalOpen": 0}


async def _health(p: Pipeline) -> dict:  # type: ignore[type-arg]
    status, body = await p.admin("GET", "/api/admin/ops/health")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _subset(health: dict, expected: dict) -> dict:  # type: ignore[type-arg]
    return {k: health[k] for k in expected}


async def test_finalize_missing_incident(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-1", "p1", 4_000)
        await outbox.run(p.deps)
        ppid = await pool.fetchval("SELECT provider_payout_id FROM payouts")
        await p.settle(ppid, "paid")  # the webhook is stored, but the webhooks job never applies it
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
        assert _subset(await _health(p), HEALTHY) == HEALTHY

        p.advance(settings.finalize_grace_minutes + 1)
        status, summary = await p.admin("POST", "/api/admin/ops/run/sentinel?mode=recent")
        assert status == 200 and summary["failed"] == 0, summary
        health = await _health(p)
        assert health["status"] == "critical" and health["integrityAlertsCriticalOpen"] == 1
        [missing] = health["finalizeMissing"]
        assert health["jobs"]["sentinel:recent"]["ok"] is True and health["jobs"]["sentinel:recent"]["trigger"]
        assert (missing["payoutId"], missing["providerPayoutId"]) == ("po-1", ppid)

        status, body = await p.admin("POST", f"/api/admin/ops/payouts/{ppid}/force-finalize")
        assert status == 200 and body["status"] == "FINALIZED" and body["ledgerFinalized"], body
        status, again = await p.admin("POST", f"/api/admin/ops/payouts/{ppid}/force-finalize")
        assert status == 200 and again["updatedAt"] == body["updatedAt"]  # nothing new written
        for action in ("ack", "resolve"):
            status, alert = await p.admin("POST", f"/api/admin/ops/alerts/{missing['alertId']}/{action}",
                                          json={"note": "finalized per runbook"})
            assert status == 200, alert
        assert alert["status"] == "RESOLVED" and alert["resolvedBy"] == "admin:ops@example.com"
        assert _subset(await _health(p), HEALTHY) == HEALTHY
        assert (await webhooks.run(p.deps)).details == {"no_change": 1}  # the late webhook changes nothing
        events = await pool.fetch("SELECT metadata FROM events WHERE event_type = 'PayoutFinalized'")
        assert events[0]["metadata"]["actor"] == "admin:ops@example.com" and events[0]["metadata"]["requestId"]
        await assert_money_invariants(pool)


async def test_quarantine_then_cancel_returns_funds(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-q", "p1", 3_000)
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-q/quarantine", json={"reason": "  "})
        assert status == 422 and body["code"] == "VALIDATION_FAILED"
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-q/quarantine",
                                     json={"reason": "Suspected fraud"})
        assert status == 200 and body["status"] == "QUARANTINED" and body["outbox"]["status"] == "FAILED"
        assert (await outbox.run(p.deps)).processed == 0  # never sent
        assert (await p.sim_stats())["payoutsCreated"] == 0
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-q/cancel", json={"reason": "confirmed fraud"})
        assert status == 200 and body["status"] == "CANCELLED" and body["fundsReturned"]
        assert await pool.fetchval("SELECT balance FROM balances WHERE account = 'payable:p1'") == 10_000
        meta = await pool.fetchval("SELECT metadata FROM events WHERE event_type = 'PayoutQuarantined'")
        assert meta["reason"] == "Suspected fraud" and meta["actor"] == "admin:ops@example.com"
        await assert_money_invariants(pool)


async def test_ledger_unbalanced_waits_for_a_human(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await pool.execute("UPDATE ledger_entries SET credit = credit + 1 WHERE account = 'payable:p1'")
        summary = await sentinel.run(p.deps, mode="full")
        assert summary.failed == 0
        codes = {r["code"] for r in await pool.fetch("SELECT code FROM alerts WHERE status = 'OPEN'")}
        assert "LEDGER_UNBALANCED" in codes
        await pool.execute("UPDATE ledger_entries SET credit = credit - 1 WHERE account = 'payable:p1'")
        await sentinel.run(p.deps, mode="full")  # the condition is gone, but it is never auto-resolved
        assert await pool.fetchval("SELECT status FROM alerts WHERE code = 'LEDGER_UNBALANCED'") == "OPEN"
        status, alerts = await p.admin("GET", "/api/admin/ops/alerts?code=LEDGER_UNBALANCED&severity=critical")
        assert status == 200 and "DO NOT attempt automated repair" in alerts["alerts"][0]["remedy"]


async def test_sentinel_raises_once_and_auto_resolves(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings, sim={"webhookDropRate": 1.0}) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-s", "p1", 1_000)
        await outbox.run(p.deps)
        p.advance(settings.sent_stuck_minutes + 1)
        for _ in range(2):
            await sentinel.run(p.deps, mode="recent")
        assert await pool.fetchval("SELECT count(*) FROM alerts WHERE code = 'SENT_STUCK'") == 1
        health = await _health(p)
        assert health["providerPayoutSentStuck10m"] == 1
        assert [(s["payoutId"], s["providerPayoutId"] is not None) for s in health["sentStuck"]] == [("po-s", True)]
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-s/force-reconcile")
        assert status == 200 and body["status"] == "SENT"  # the provider has no final word yet
        await p.settle(body["providerPayoutId"], "paid")
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-s/force-reconcile")
        assert status == 200 and body["status"] == "FINALIZED"
        await sentinel.run(p.deps, mode="recent")
        row = await pool.fetchrow("SELECT status, automatic FROM alerts WHERE code = 'SENT_STUCK'")
        assert (row["status"], row["automatic"]) == ("RESOLVED", True)
        assert _subset(await _health(p), HEALTHY) == HEALTHY


async def test_full_sentinel_records_the_daily_digest_and_catches_a_changed_day(
        pool: asyncpg.Pool, settings: Settings) -> None:
    from datetime import timedelta

    from tests.integration.test_audit_export import insert_day

    async with live_pipeline(pool, settings) as p:
        now = p.deps.clock()
        if now.hour == 0 and now.minute < 11:  # yesterday closes 10 minutes after midnight: be 15 minutes
            p.advance(-15)                     # earlier, so the runs' "yesterday" is the day before
        yesterday = p.deps.clock().date() - timedelta(days=1)
        await insert_day(pool, yesterday)
        assert (await sentinel.run(p.deps, mode="full")).details["digest:recorded"] == 1
        assert (await sentinel.run(p.deps, mode="full")).details["digest:already_recorded"] == 1
        async with pool.acquire() as c, c.transaction():
            await c.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
            await c.execute("UPDATE events SET hash = sha256(hash) WHERE seq = (SELECT min(seq) FROM events "
                            "WHERE recorded_at::date = $1)", yesterday)
            await c.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
        summary = await sentinel.run(p.deps, mode="full")
        assert summary.details["digest:mismatch"] == 1
        codes = {r["code"] for r in await pool.fetch("SELECT code FROM alerts WHERE status = 'OPEN'")}
        assert {"DIGEST_MISMATCH", "HASH_CHAIN_BROKEN"} <= codes


async def test_full_sentinel_records_every_unrecorded_closed_day_oldest_first_bounded_per_run(
        pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Days -6, -4 and -2 hold events; -5, -3 and -1 none (their digest records an empty day). Two days
    per run, oldest first, until -6 .. -1 are recorded; two sentinels at once record each day once."""
    from datetime import timedelta

    from periodya.audit.daily_digests import recorded_days
    from tests.integration.test_audit_export import insert_day

    monkeypatch.setattr(sentinel, "MAX_DIGEST_DAYS", 2)
    async with live_pipeline(pool, settings) as p:
        now = p.deps.clock()
        if now.hour == 0 and now.minute < 11:  # yesterday closes 10 minutes after midnight: be 15 minutes
            p.advance(-15)                     # earlier, so the runs' "yesterday" is the day before
        today = p.deps.clock().date()
        for back in (6, 4, 2):
            await insert_day(pool, today - timedelta(days=back), prefix=f"day{back}")
        days = [(today - timedelta(days=back)).isoformat() for back in range(6, 0, -1)]

        first = await sentinel.run(p.deps, mode="full")
        assert first.details["digest:recorded"] == 2 and first.failed == 0
        assert [d.day for d in await recorded_days(pool)] == days[:2]
        both = await asyncio.gather(sentinel.run(p.deps, mode="full"), sentinel.run(p.deps, mode="full"))
        assert all(s.failed == 0 and "digest:mismatch" not in s.details for s in both)
        n = 2 + sum(s.details.get("digest:recorded", 0) for s in both)  # 4, or 6 when one run came after
        assert [d.day for d in await recorded_days(pool)] == days[:n]  # oldest first, each day once
        assert await pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'LogDigestRecorded'") == n
        while n < 6:
            n += (await sentinel.run(p.deps, mode="full")).details["digest:recorded"]
        assert [(d.day, d.count) for d in await recorded_days(pool)] == [
            (day, 20 if k % 2 == 0 else 0) for k, day in enumerate(days)]
        again = await sentinel.run(p.deps, mode="full")  # nothing left to record; yesterday re-checked
        assert "digest:recorded" not in again.details and again.details["digest:already_recorded"] == 1
        assert await pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'LogDigestRecorded'") == 6
        assert await pool.fetchval("SELECT count(*) FROM alerts WHERE status = 'OPEN'") == 0
