"""Issue 11 (7): alerts an operator can act on. The remedy names the real payout, every list filter takes
either case (the runbook writes severity=CRITICAL), and a SENT_STUCK / OUTBOX_STUCK alert closes in the
transaction of the job that healed its payout, resolved by "system"."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from periodya.config import Settings
from periodya.runners import outbox, reconcile, repair, sentinel, webhooks
from tests.integration.horizon import settled as _settled
from tests.integration.pipeline import Pipeline, live_pipeline, wait_for


@pytest.fixture
async def p(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[Pipeline]:
    async with live_pipeline(pool, settings) as pipeline:
        await pipeline.fund_payee("p1", 10_000)
        yield pipeline


async def _sent_stuck(p: Pipeline, settings: Settings, payout_id: str) -> str:
    """A payout SENT past the threshold and the sentinel's alert for it; returns its provider payout id."""
    await p.request(payout_id, "p1", 1_000)
    await outbox.run(p.deps)
    p.advance(settings.sent_stuck_minutes + 1)
    await _settled(p.store.pool)
    await sentinel.run(p.deps, mode="recent")
    ppid: str = await p.store.pool.fetchval("SELECT provider_payout_id FROM payouts WHERE payout_id = $1", payout_id)
    return ppid


async def _alerts(p: Pipeline, query: str) -> list[dict]:  # type: ignore[type-arg]
    status, body = await p.admin("GET", f"/api/admin/ops/alerts{query}")
    assert status == 200, (query, body)
    return body["alerts"]  # type: ignore[no-any-return]


async def test_remedies_name_the_real_payout(p: Pipeline, settings: Settings) -> None:
    ppid = await _sent_stuck(p, settings, "po-r")
    [alert] = await _alerts(p, "?code=SENT_STUCK")
    assert "/api/admin/ops/payouts/po-r/force-reconcile" in alert["remedy"], alert["remedy"]
    assert "{" not in alert["remedy"]
    await p.settle(ppid, "paid")  # stored, never applied: FINALIZE_MISSING after the grace period
    await wait_for(lambda: p.store.pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
    p.advance(settings.finalize_grace_minutes + 1)
    await sentinel.run(p.deps, mode="full")
    [missing] = await _alerts(p, "?code=FINALIZE_MISSING")
    assert f"/api/admin/ops/payouts/{ppid}/force-finalize" in missing["remedy"], missing["remedy"]
    assert "{" not in missing["remedy"]


async def test_every_alert_filter_takes_either_case(p: Pipeline, settings: Settings) -> None:
    await _sent_stuck(p, settings, "po-c")
    for query in ("?severity=WARNING", "?severity=warning", "?status=OPEN", "?status=open", "?code=sent_stuck",
                  "?code=SENT_STUCK", "?severity=Warning&status=Open&code=Sent_Stuck"):
        assert [a["subject"] for a in await _alerts(p, query)] == ["po-c"], query
    for query in ("?severity=CRITICAL", "?severity=critical", "?status=resolved", "?code=finalize_missing"):
        assert await _alerts(p, query) == [], query
    for query in ("?severity=loud", "?status=closed"):
        status, body = await p.admin("GET", f"/api/admin/ops/alerts{query}")
        assert status == 422 and body["code"] == "VALIDATION_FAILED", (query, body)


async def _assert_healed_in_the_same_transaction(p: Pipeline, code: str, payout_id: str, healing_type: str) -> None:
    pool = p.store.pool
    row = await pool.fetchrow("SELECT * FROM alerts WHERE code = $1 AND subject = $2", code, payout_id)
    assert (row["status"], row["resolved_by"], row["automatic"]) == ("RESOLVED", "system", True), dict(row)
    resolved_tx = await pool.fetchval("SELECT tx FROM events WHERE event_type = 'AlertResolved' "
                                      "AND data->>'alertId' = $1", row["alert_id"])
    healed_tx = await pool.fetch("SELECT tx FROM events WHERE stream_id = $1 AND event_type = $2",
                                 f"payout-{payout_id}", healing_type)
    assert resolved_tx in [r["tx"] for r in healed_tx]


async def test_sent_stuck_closes_when_the_webhooks_job_records_the_answer(p: Pipeline, settings: Settings) -> None:
    ppid = await _sent_stuck(p, settings, "po-w")
    await p.settle(ppid, "paid")
    await wait_for(lambda: p.store.pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
    await webhooks.run(p.deps)
    await _assert_healed_in_the_same_transaction(p, "SENT_STUCK", "po-w", "PayoutProviderPaid")


async def test_sent_stuck_closes_when_reconcile_pull_records_the_answer(p: Pipeline, settings: Settings) -> None:
    ppid = await _sent_stuck(p, settings, "po-rp")
    await p.sim_config(webhookDropRate=1.0)
    await p.settle(ppid, "failed")
    await reconcile.run(p.deps)
    await _assert_healed_in_the_same_transaction(p, "SENT_STUCK", "po-rp", "PayoutProviderFailed")


async def test_outbox_stuck_closes_when_the_repair_job_heals_it(p: Pipeline, settings: Settings) -> None:
    await p.request("po-o", "p1", 1_000)
    await outbox.claim_batch(p.deps, ["po-o"])  # SENDING; the process "died" before calling the provider
    p.advance(settings.sending_stuck_minutes + 1)
    await _settled(p.store.pool)
    await sentinel.run(p.deps, mode="recent")
    [alert] = await _alerts(p, "?code=OUTBOX_STUCK")
    assert alert["status"] == "OPEN" and "/api/admin/ops/payouts/po-o/rerun-outbox" in alert["remedy"]
    assert (await repair.run(p.deps)).details == {"sent": 1}
    await _assert_healed_in_the_same_transaction(p, "OUTBOX_STUCK", "po-o", "PayoutSent")
    assert [a["resolvedBy"] for a in await _alerts(p, "?code=OUTBOX_STUCK")] == ["system"]
