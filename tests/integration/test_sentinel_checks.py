"""Every sentinel check made true by a real condition, then the condition removed: its alert auto-resolves
(or does not, for LEDGER_UNBALANCED and HASH_CHAIN_BROKEN), in each mode the check runs in.

A check changed to report nothing fails the `raised` assertion of its test here (issue 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from periodya.config import Settings
from periodya.domain import escrow
from periodya.handlers import platform
from periodya.handlers.unit_of_work import run_command
from periodya.runners import outbox, sentinel, webhooks
from tests.integration.horizon import settled as _settled
from tests.integration.pipeline import META, Pipeline, live_pipeline, wait_for

MODES = ["recent", "full"]


@pytest.fixture
async def p(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[Pipeline]:
    async with live_pipeline(pool, settings) as pipeline:
        await pipeline.fund_payee("p1", 10_000)
        yield pipeline


async def run(p: Pipeline, mode: str) -> None:
    await _settled(p.store.pool)  # the recent run reads what is below the (cluster-wide) snapshot horizon
    await sentinel.run(p.deps, mode=mode)


async def touch_p1(p: Pipeline) -> None:
    """A new ledger group on payable:p1 (and a new escrow stream): in the next recent run's scope."""
    n = await p.store.pool.fetchval("SELECT count(*) FROM escrows")
    eid = f"esc-touch{n}"
    await run_command(p.store, META, lambda u: platform.fund_escrow(u, escrow.FundEscrow(eid, 1, "USD")))
    await run_command(p.store, META, lambda u: platform.release_escrow(u, escrow.ReleaseEscrow(eid, "p1", 1, 0)))


async def alert(p: Pipeline, code: str, subject: str | None = None) -> asyncpg.Record | None:
    """The newest alert of `code` (and `subject`)."""
    return await p.store.pool.fetchrow(
        "SELECT * FROM alerts WHERE code = $1 AND ($2::text IS NULL OR subject = $2) ORDER BY raised_at DESC "
        "LIMIT 1", code, subject)


async def assert_open(p: Pipeline, code: str, subject: str | None = None) -> asyncpg.Record:
    row = await alert(p, code, subject)
    assert row is not None and row["status"] == "OPEN", (code, subject, row)
    return row


async def assert_auto_resolved(p: Pipeline, code: str, subject: str | None = None) -> None:
    row = await alert(p, code, subject)
    assert row is not None and (row["status"], row["automatic"], row["resolved_by"]) == ("RESOLVED", True,
                                                                                         "sentinel"), row


async def _tamper_entries(pool: asyncpg.Pool, delta: int) -> None:
    await pool.execute("UPDATE ledger_entries SET credit = credit + $1 WHERE (group_id, line) = "
                       "(SELECT group_id, line FROM ledger_entries WHERE account = 'payable:p1' AND credit > 0 "
                       "ORDER BY group_id, line LIMIT 1)", delta)


@pytest.mark.parametrize("mode", MODES)
async def test_ledger_unbalanced_is_raised_and_never_auto_resolved(p: Pipeline, mode: str) -> None:
    await _tamper_entries(p.store.pool, 1)
    await run(p, mode)
    await assert_open(p, "LEDGER_UNBALANCED")
    await _tamper_entries(p.store.pool, -1)
    await touch_p1(p)  # a new group on the account: in the recent run's scope again
    await run(p, mode)
    await assert_open(p, "LEDGER_UNBALANCED")


async def test_balance_drift_against_the_log_is_raised_and_resolved_by_the_full_run(p: Pipeline) -> None:
    pool = p.store.pool
    await pool.execute("UPDATE balances SET balance = balance + 5, credits = credits + 5 WHERE account = 'payable:p1'")
    await run(p, "recent")  # the log is read by full runs only
    assert await alert(p, "BALANCE_DRIFT") is None
    await run(p, "full")
    row = await assert_open(p, "BALANCE_DRIFT", "payable:p1:USD")
    assert row["details"]["live"] == row["details"]["fromLog"] + 5
    await run(p, "recent")  # a recent run did not check the log: it resolves nothing of this code
    await assert_open(p, "BALANCE_DRIFT", "payable:p1:USD")
    await pool.execute("UPDATE balances SET balance = balance - 5, credits = credits - 5 WHERE account = 'payable:p1'")
    await run(p, "full")
    await assert_auto_resolved(p, "BALANCE_DRIFT", "payable:p1:USD")


async def test_balance_against_its_entries_is_raised_and_resolved_by_the_recent_run(p: Pipeline) -> None:
    pool = p.store.pool
    await pool.execute("UPDATE balances SET balance = balance + 5, credits = credits + 5 WHERE account = 'payable:p1'")
    await run(p, "full")  # the full run compares balances with the log (BALANCE_DRIFT), not with entries
    assert await alert(p, "BALANCE_ENTRIES_DRIFT") is None
    await touch_p1(p)
    await run(p, "recent")
    row = await assert_open(p, "BALANCE_ENTRIES_DRIFT", "payable:p1:USD")
    assert row["details"]["live"] == row["details"]["fromEntries"] + 5
    await pool.execute("UPDATE balances SET balance = balance - 5, credits = credits - 5 WHERE account = 'payable:p1'")
    await run(p, "recent")  # not touched since: not checked, so still open
    await run(p, "full")  # nor by the full run, which does not check this condition
    await assert_open(p, "BALANCE_ENTRIES_DRIFT", "payable:p1:USD")
    await touch_p1(p)
    await run(p, "recent")  # checked again, and whole
    await assert_auto_resolved(p, "BALANCE_ENTRIES_DRIFT", "payable:p1:USD")


async def test_a_drift_raised_by_the_recent_run_is_not_resolved_by_a_full_run_that_did_not_clear_it(
        p: Pipeline) -> None:
    """Issue 11 (2): the recent run raised a drift for a tampered ledger_entries row (balances against
    entries); the full run compared balances with the log, found them equal, and resolved the alert
    while the tampered row was still there."""
    pool = p.store.pool
    await _tamper_entries(pool, 3)
    await run(p, "recent")
    raised = await pool.fetch("SELECT alert_id, code FROM alerts WHERE subject = 'payable:p1:USD'")
    assert raised, "the recent run raised nothing for the tampered entry"
    await run(p, "full")
    still = await pool.fetch("SELECT code, status FROM alerts WHERE alert_id = ANY($1::text[])",
                             [r["alert_id"] for r in raised])
    assert {r["status"] for r in still} == {"OPEN"}, still
    await _tamper_entries(pool, -3)
    await touch_p1(p)
    await run(p, "recent")
    for r in raised:
        await assert_auto_resolved(p, r["code"], "payable:p1:USD")


@pytest.mark.parametrize("mode", MODES)
async def test_duplicate_payout_is_raised_and_resolved(p: Pipeline, mode: str) -> None:
    pool = p.store.pool
    await p.request("po-d", "p1", 1_000)
    await outbox.run(p.deps)
    ppid = await pool.fetchval("SELECT provider_payout_id FROM payouts WHERE payout_id = 'po-d'")
    await p.settle(ppid, "paid")
    await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
    await webhooks.run(p.deps)
    await run(p, mode)
    assert await alert(p, "DUPLICATE_PAYOUT") is None  # the provider's event agrees with the payout
    await pool.execute("UPDATE provider_events SET amount = amount + 1")  # the provider reports another amount
    await run(p, mode)
    row = await assert_open(p, "DUPLICATE_PAYOUT", "po-d")
    assert (row["details"]["amount"], row["details"]["providerAmount"]) == (1_000, 1_001)
    await pool.execute("UPDATE provider_events SET amount = amount - 1")
    await run(p, mode)
    await assert_auto_resolved(p, "DUPLICATE_PAYOUT", "po-d")


@pytest.mark.parametrize("mode", MODES)
async def test_sentinel_check_failed_is_raised_and_resolved_when_the_check_runs_again(p: Pipeline, mode: str) -> None:
    pool = p.store.pool
    await pool.execute("ALTER TABLE provider_events RENAME TO provider_events_away")
    try:
        await _settled(pool)
        summary = await sentinel.run(p.deps, mode=mode)
    finally:
        await pool.execute("ALTER TABLE provider_events_away RENAME TO provider_events")
    assert summary.failed >= 1
    await assert_open(p, "SENTINEL_CHECK_FAILED", "duplicate_payout")
    await run(p, mode)
    await assert_auto_resolved(p, "SENTINEL_CHECK_FAILED", "duplicate_payout")


@pytest.mark.parametrize("mode", MODES)
async def test_hash_chain_broken_is_raised_and_never_auto_resolved(p: Pipeline, mode: str) -> None:
    pool = p.store.pool

    async def release(amount: int) -> None:
        await run_command(p.store, META, lambda u: platform.release_escrow(
            u, escrow.ReleaseEscrow("esc-h", "p1", amount, 0)))

    await run_command(p.store, META, lambda u: platform.fund_escrow(u, escrow.FundEscrow("esc-h", 100, "USD")))
    await release(50)
    seq, data = await pool.fetchrow(
        "SELECT seq, data FROM events WHERE stream_id = 'escrow-esc-h' AND stream_version = 1")

    async def set_data(value: object) -> None:
        async with pool.acquire() as c, c.transaction():
            await c.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
            await c.execute("UPDATE events SET data = $2 WHERE seq = $1", seq, value)
            await c.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")

    await set_data({**data, "amount": data["amount"] + 1})
    await run(p, mode)
    await assert_open(p, "HASH_CHAIN_BROKEN", "escrow-esc-h")
    await set_data(data)
    await release(10)  # esc-h written again: in the recent run's scope, its chain checked again and whole
    await run(p, mode)
    await assert_open(p, "HASH_CHAIN_BROKEN", "escrow-esc-h")


@pytest.mark.parametrize("mode", MODES)
async def test_finalize_missing_is_raised_and_resolved(p: Pipeline, settings: Settings, mode: str) -> None:
    pool = p.store.pool
    await p.request("po-f", "p1", 1_000)
    await outbox.run(p.deps)
    await p.settle(await pool.fetchval("SELECT provider_payout_id FROM payouts"), "paid")
    await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
    p.advance(settings.finalize_grace_minutes + 1)
    await run(p, mode)
    await assert_open(p, "FINALIZE_MISSING", "po-f")
    await webhooks.run(p.deps)  # the stored paid webhook is applied: finalized
    await run(p, mode)
    await assert_auto_resolved(p, "FINALIZE_MISSING", "po-f")


@pytest.mark.parametrize("mode", MODES)
async def test_outbox_stuck_is_raised_and_resolved(p: Pipeline, settings: Settings, mode: str) -> None:
    await p.request("po-o", "p1", 1_000)
    await outbox.claim_batch(p.deps, ["po-o"])  # SENDING, and the process "dies" before calling the provider
    p.advance(settings.sending_stuck_minutes + 1)
    await run(p, mode)
    await assert_open(p, "OUTBOX_STUCK", "po-o")
    p.skew[0] = timedelta(0)  # back to the moment it was claimed: not stuck (yet)
    await run(p, mode)
    await assert_auto_resolved(p, "OUTBOX_STUCK", "po-o")


@pytest.mark.parametrize("mode", MODES)
async def test_sent_stuck_is_raised_and_resolved(p: Pipeline, settings: Settings, mode: str) -> None:
    await p.request("po-s", "p1", 1_000)
    await outbox.run(p.deps)
    p.advance(settings.sent_stuck_minutes + 1)
    await run(p, mode)
    await assert_open(p, "SENT_STUCK", "po-s")
    p.skew[0] = timedelta(0)  # back to the moment it was sent: not stuck (yet)
    await run(p, mode)
    await assert_auto_resolved(p, "SENT_STUCK", "po-s")


@pytest.mark.parametrize("mode", MODES)
async def test_alerts_capped_is_resolved_once_the_code_fits_under_the_cap_again(
        p: Pipeline, settings: Settings, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ALERTS_CAPPED stands for "more findings of a code than one run raises": once a complete run of that
    code is under the cap again, it resolves (the drill found it open long after every SENT_STUCK healed)."""
    monkeypatch.setattr(sentinel, "MAX_NEW_PER_CODE", 1)
    for pid in ("po-c1", "po-c2"):
        await p.request(pid, "p1", 1_000)
    await outbox.run(p.deps)
    p.advance(settings.sent_stuck_minutes + 1)
    await run(p, mode)
    await assert_open(p, "ALERTS_CAPPED", "SENT_STUCK")
    p.skew[0] = timedelta(0)  # nothing stuck any more
    await run(p, mode)
    await assert_auto_resolved(p, "ALERTS_CAPPED", "SENT_STUCK")
