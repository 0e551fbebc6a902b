"""Lock before you write, for the alert a healing transaction resolves (found by the whole-system drill:
`periodya replay` / `verify-export` said "stream version gap after v2" on a SENT_STUCK alert stream).

The interleaving, made deterministic with two real connections besides the pool: reconcile-pull's
transaction records a payout's PayoutProviderFailed (its xid is assigned at that first write) and is then
held, before its inline projection, by a row lock a third connection keeps on the payout's row. Meanwhile
the sentinel-style raise of SENT_STUCK for that payout writes (a larger xid) and commits. Then the healing
transaction goes on. Were it to resolve the alert it only now sees, the resolve (v2) would sit before the
raise (v1) in the log's (tx, seq) order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from periodya.config import Settings
from periodya.db import SCHEMA
from periodya.domain import alerts as alert_domain
from periodya.domain.alerts import WARNING
from periodya.handlers import alerts
from periodya.handlers.unit_of_work import run_command
from periodya.runners import outbox, reconcile, sentinel
from periodya.runners.sentinel_checks import remedy
from tests.integration.horizon import settled as _settled
from tests.integration.pipeline import Pipeline, live_pipeline, wait_for


@pytest.fixture
async def p(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[Pipeline]:
    async with live_pipeline(pool, settings) as pipeline:
        await pipeline.fund_payee("p1", 10_000)
        yield pipeline


async def _versions_in_log_order(pool: asyncpg.Pool, stream_id: str) -> list[int]:
    rows = await pool.fetch("SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY tx, seq", stream_id)
    return [r["stream_version"] for r in rows]


async def test_a_raise_committed_after_the_heal_wrote_is_not_resolved_before_it_in_tx_order(
        p: Pipeline, settings: Settings, database_url: str) -> None:
    pool = p.store.pool
    await p.request("po-x", "p1", 1_000)
    await outbox.run(p.deps)
    ppid = await pool.fetchval("SELECT provider_payout_id FROM payouts WHERE payout_id = 'po-x'")
    await p.sim_config(webhookDropRate=1.0)
    await p.settle(ppid, "failed")
    p.advance(settings.sent_stuck_minutes + 1)
    await _settled(pool)
    stream = alert_domain.stream("SENT_STUCK", "po-x")

    holder = await asyncpg.connect(database_url, server_settings={"search_path": SCHEMA})
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM payouts WHERE payout_id = 'po-x' FOR UPDATE")
        blocker = holder.get_server_pid()
        healing = asyncio.create_task(reconcile.run(p.deps))
        # the healing transaction has written its events (xid assigned) and waits in its projection
        await wait_for(lambda: pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid)) "
            "AND backend_xid IS NOT NULL)", blocker))
        details = {"payoutId": "po-x"}
        assert await run_command(p.store, sentinel.META, lambda u: alerts.raise_alert(
            u, "SENT_STUCK", WARNING, "po-x", details, remedy("SENT_STUCK", details)))
        await tx.rollback()
        summary = await healing
    finally:
        await holder.close()

    assert await pool.fetchval("SELECT status FROM payouts WHERE payout_id = 'po-x'") == "FAILED", summary
    versions = await _versions_in_log_order(pool, stream)
    assert versions == list(range(1, len(versions) + 1)), versions
    # the alert raised after the heal's lookup is left to the sentinel, whose next run sees it cleared
    assert await pool.fetchval("SELECT status FROM alerts WHERE code = 'SENT_STUCK' AND subject = 'po-x'") == "OPEN"
    await _settled(pool)
    await sentinel.run(p.deps, mode="full")
    row = await pool.fetchrow("SELECT status, resolved_by FROM alerts WHERE code = 'SENT_STUCK' AND subject = 'po-x'")
    assert (row["status"], row["resolved_by"]) == ("RESOLVED", "sentinel"), dict(row)
    versions = await _versions_in_log_order(pool, stream)
    assert versions == [1, 2], versions
