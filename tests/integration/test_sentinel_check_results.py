"""Each sentinel check called on its own, in the snapshot the sentinel gives it, and its whole Result
pinned: code, severity, every finding's details (the ids an operator acts on), whether it was complete,
how much it examined and which subjects it checked. test_sentinel_checks.py proves each alert is raised
and resolved through the sentinel; these prove what each check reports, field by field, and which rows
it must leave out (the mutants of `python -m bench mutants sentinel_checks` that survived those tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from periodya.config import Settings
from periodya.domain import escrow
from periodya.domain.alerts import CRITICAL, WARNING
from periodya.eventstore.verify import chain_breaks_in_db
from periodya.handlers import platform
from periodya.handlers.unit_of_work import run_command
from periodya.runners import outbox, sentinel
from periodya.runners.check_result import Result, Scope
from periodya.runners.sentinel_checks import (
    REMEDY,
    Check,
    balance_drift,
    balance_entries_drift,
    duplicate_payout,
    finalize_missing,
    hash_chain,
    ledger_unbalanced,
    outbox_stuck,
    remedy,
    sent_stuck,
)
from tests.integration.pipeline import META, Pipeline, live_pipeline, wait_for

FULL = Scope(True)


@pytest.fixture
async def p(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[Pipeline]:
    async with live_pipeline(pool, settings) as pipeline:
        await pipeline.fund_payee("p1", 10_000)
        yield pipeline


async def check(p: Pipeline, fn: Check, scope: Scope) -> Result:
    """One check as the sentinel runs it: in one read-only REPEATABLE READ snapshot."""
    async with p.store.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        return await fn(p.deps, conn, scope)


def ledger(*groups: str) -> Scope:
    return Scope(False, [f"ledger-{g}" for g in groups])


async def sent_payout(p: Pipeline, payout_id: str, amount: int = 1_000) -> str:
    """A payout sent to the provider (SENT); its provider payout id."""
    await p.request(payout_id, "p1", amount)
    await outbox.run(p.deps)
    ppid: str = await p.store.pool.fetchval("SELECT provider_payout_id FROM payouts WHERE payout_id = $1", payout_id)
    assert ppid
    return ppid


async def paid_webhook_stored(p: Pipeline, payout_id: str) -> str:
    """A payout the provider paid, whose paid webhook is stored but not applied (not finalized)."""
    ppid = await sent_payout(p, payout_id)
    await p.settle(ppid, "paid")
    await wait_for(lambda: p.store.pool.fetchval(
        "SELECT count(*) = 1 FROM provider_events WHERE provider_payout_id = $1", ppid))
    return ppid


async def test_finalize_missing_reports_a_stored_paid_webhook_after_the_grace_period(
        p: Pipeline, settings: Settings) -> None:
    pool = p.store.pool
    ppid = await paid_webhook_stored(p, "po-f")
    assert await check(p, finalize_missing, FULL) == Result("FINALIZE_MISSING", CRITICAL, {}, True, 0)  # in grace
    p.advance(settings.finalize_grace_minutes + 1)
    received = await pool.fetchval("SELECT received_at FROM provider_events")
    expected = {"po-f": {"payoutId": "po-f", "providerPayoutId": ppid, "paidSince": received.isoformat()}}
    assert await check(p, finalize_missing, FULL) == Result("FINALIZE_MISSING", CRITICAL, expected, True, 1)
    for final in ("FAILED", "CANCELLED"):  # a payout that ended otherwise: a late paid webhook is not "missing"
        await pool.execute("UPDATE payouts SET status = $1", final)
        assert await check(p, finalize_missing, FULL) == Result("FINALIZE_MISSING", CRITICAL, {}, True, 0), final


async def test_finalize_missing_reports_a_recorded_paid_status_and_the_earliest_paid_moment(
        p: Pipeline, settings: Settings) -> None:
    """Provider status 'paid' recorded on the payout but not finalized: a finding of its own; when a stored
    webhook also says paid, the finding is the earlier of the two (the longest the payout waited)."""
    pool = p.store.pool
    ppid = await sent_payout(p, "po-r")
    updated = await pool.fetchval("UPDATE payouts SET provider_status = 'paid' RETURNING updated_at")
    assert await check(p, finalize_missing, FULL) == Result("FINALIZE_MISSING", CRITICAL, {}, True, 0)
    p.advance(settings.finalize_grace_minutes + 1)
    only = {"po-r": {"payoutId": "po-r", "providerPayoutId": ppid, "paidSince": updated.isoformat()}}
    assert await check(p, finalize_missing, FULL) == Result("FINALIZE_MISSING", CRITICAL, only, True, 1)
    await pool.execute("UPDATE payouts SET ledger_finalized = true")
    assert await check(p, finalize_missing, FULL) == Result("FINALIZE_MISSING", CRITICAL, {}, True, 0)
    await pool.execute("UPDATE payouts SET ledger_finalized = false")

    await p.settle(ppid, "paid")
    await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
    # The stored webhook names another provider id ('zz...' sorts after ours) and is the earlier one:
    # the finding is the webhook's, chosen by time, not by the rows' order.
    earlier = updated - timedelta(minutes=5)
    await pool.execute("UPDATE provider_events SET provider_payout_id = 'zz_theirs', received_at = $1", earlier)
    theirs = {"po-r": {"payoutId": "po-r", "providerPayoutId": "zz_theirs", "paidSince": earlier.isoformat()}}
    assert ppid < "zz_theirs"
    assert await check(p, finalize_missing, FULL) == Result("FINALIZE_MISSING", CRITICAL, theirs, True, 2)
    await pool.execute("UPDATE payouts SET updated_at = $1", earlier - timedelta(minutes=5))
    ours = {"po-r": {"payoutId": "po-r", "providerPayoutId": ppid,
                     "paidSince": (earlier - timedelta(minutes=5)).isoformat()}}
    assert await check(p, finalize_missing, FULL) == Result("FINALIZE_MISSING", CRITICAL, ours, True, 2)
    await pool.execute("UPDATE provider_events SET applied_seq = 1")  # applied: only the recorded status is left
    assert (await check(p, finalize_missing, FULL)).examined == 1


async def test_sent_stuck_reports_each_payout_sent_too_long_ago(p: Pipeline, settings: Settings) -> None:
    pool = p.store.pool
    ppid = await sent_payout(p, "po-s")
    assert await check(p, sent_stuck, FULL) == Result("SENT_STUCK", WARNING, {}, True, 0)
    p.advance(settings.sent_stuck_minutes + 1)
    sent_at = await pool.fetchval("SELECT status_changed_at FROM payouts")
    expected = {"po-s": {"payoutId": "po-s", "providerPayoutId": ppid, "sentAt": sent_at.isoformat()}}
    assert await check(p, sent_stuck, FULL) == Result("SENT_STUCK", WARNING, expected, True, 1)
    assert await check(p, sent_stuck, ledger()) == Result("SENT_STUCK", WARNING, expected, True, 1)


async def test_outbox_stuck_reports_each_task_sending_too_long(p: Pipeline, settings: Settings) -> None:
    pool = p.store.pool
    await p.request("po-o", "p1", 1_000)
    await outbox.claim_batch(p.deps, ["po-o"])
    assert await check(p, outbox_stuck, FULL) == Result("OUTBOX_STUCK", WARNING, {}, True, 0)
    p.advance(settings.sending_stuck_minutes + 1)
    row = await pool.fetchrow("SELECT attempts, updated_at FROM outbox")
    expected = {"po-o": {"payoutId": "po-o", "attempts": row["attempts"],
                         "sendingSince": row["updated_at"].isoformat()}}
    assert row["attempts"] == 1
    assert await check(p, outbox_stuck, FULL) == Result("OUTBOX_STUCK", WARNING, expected, True, 1)
    await pool.execute("UPDATE outbox SET status = 'PENDING'")
    assert await check(p, outbox_stuck, FULL) == Result("OUTBOX_STUCK", WARNING, {}, True, 0)


async def test_ledger_unbalanced_reports_each_unbalanced_group_and_currency(p: Pipeline) -> None:
    pool = p.store.pool
    groups = [r["group_id"] for r in await pool.fetch("SELECT DISTINCT group_id FROM ledger_entries ORDER BY 1")]
    n_groups = len(groups)
    assert n_groups >= 2 and await pool.fetchval("SELECT count(DISTINCT currency) FROM balances") == 1
    assert await check(p, ledger_unbalanced, FULL) == Result("LEDGER_UNBALANCED", CRITICAL, {}, False, n_groups + 1)
    gid = await pool.fetchval(
        "UPDATE ledger_entries SET credit = credit + 3 WHERE (group_id, line) = (SELECT group_id, line FROM "
        "ledger_entries WHERE credit > 0 ORDER BY group_id, line LIMIT 1) RETURNING group_id")
    other = next(g for g in groups if g != gid)
    sums = await pool.fetchrow("SELECT sum(debit)::bigint AS d, sum(credit)::bigint AS c FROM ledger_entries "
                               "WHERE group_id = $1", gid)
    assert sums["c"] == sums["d"] + 3
    finding = {f"group:{gid}": {"groupId": gid, "currency": "USD", "debits": sums["d"], "credits": sums["c"]}}
    assert await check(p, ledger_unbalanced, FULL) == Result("LEDGER_UNBALANCED", CRITICAL, finding, False,
                                                             n_groups + 1)
    # A recent run checks only the groups written since: the tampered one, or another (whole) one.
    assert await check(p, ledger_unbalanced, ledger(gid)) == Result("LEDGER_UNBALANCED", CRITICAL, finding, False, 2)
    assert await check(p, ledger_unbalanced, ledger(other)) == Result("LEDGER_UNBALANCED", CRITICAL, {}, False, 2)
    # A group posted in the log with no rows in the ledger view.
    missing = {"group:g-gone": {"groupId": "g-gone", "problem": "posted in the log, no ledger entries"}}
    assert await check(p, ledger_unbalanced, ledger(other, "g-gone")) == Result(
        "LEDGER_UNBALANCED", CRITICAL, missing, False, 2)
    assert await check(p, ledger_unbalanced, FULL) == Result("LEDGER_UNBALANCED", CRITICAL, finding, False,
                                                             n_groups + 1)  # a full run lists no such group

    # Balances that do not sum to zero in a currency (money created), one point off or more.
    await pool.execute("UPDATE ledger_entries SET credit = credit - 3 WHERE (group_id, line) = (SELECT group_id, "
                       "line FROM ledger_entries WHERE group_id = $1 AND credit > 3 ORDER BY line LIMIT 1)", gid)
    for delta in (1, 5):
        await pool.execute("UPDATE balances SET balance = balance + $1, credits = credits + $1 "
                           "WHERE account = 'payable:p1'", delta)
        created = {"currency:USD": {"currency": "USD", "sumOfBalances": delta}}
        assert await check(p, ledger_unbalanced, FULL) == Result("LEDGER_UNBALANCED", CRITICAL, created, False,
                                                                 n_groups + 1)
        await pool.execute("UPDATE balances SET balance = balance - $1, credits = credits - $1 "
                           "WHERE account = 'payable:p1'", delta)


async def _balances(pool: asyncpg.Pool) -> dict[tuple[str, str], int]:
    return {(r["account"], r["currency"]): r["balance"]
            for r in await pool.fetch("SELECT account, currency, balance FROM balances")}


async def test_balance_drift_reports_every_account_the_log_and_the_balances_disagree_on(p: Pipeline) -> None:
    pool = p.store.pool
    before = await _balances(pool)
    keys = frozenset(f"{a}:{c}" for a, c in before)
    assert len(before) >= 2
    whole = Result("BALANCE_DRIFT", CRITICAL, {}, True, 2 * len(before), keys)
    assert await check(p, balance_drift, FULL) == whole
    assert await check(p, balance_drift, ledger()) == Result("BALANCE_DRIFT", CRITICAL, {}, False, 0)

    # An escrow funded and fully released: its account's balance is 0 in the log and in the table.
    await run_command(p.store, META, lambda u: platform.fund_escrow(u, escrow.FundEscrow("esc-z", 7, "USD")))
    await run_command(p.store, META, lambda u: platform.release_escrow(u, escrow.ReleaseEscrow("esc-z", "p1", 7, 0)))
    now = await _balances(pool)
    zero = next(k for k, v in now.items() if v == 0)
    keys = frozenset(f"{a}:{c}" for a, c in now)
    assert await check(p, balance_drift, FULL) == Result("BALANCE_DRIFT", CRITICAL, {}, True, 2 * len(now), keys)

    await pool.execute("UPDATE balances SET balance = balance + 5, credits = credits + 5 WHERE account = 'payable:p1'")
    await pool.execute("DELETE FROM balances WHERE (account, currency) = ($1, $2)", *zero)  # 0 either way: whole
    await pool.execute("INSERT INTO balances VALUES ('payable:ghost', 'USD', 1, 0, 1, false, 0, now()), "
                       "('payable:naught', 'USD', 0, 0, 0, false, 0, now())")  # 1 the log never posted; 0 is whole
    p1 = now[("payable:p1", "USD")]
    drift = {"payable:p1:USD": {"account": "payable:p1", "currency": "USD", "live": p1 + 5, "fromLog": p1},
             "payable:ghost:USD": {"account": "payable:ghost", "currency": "USD", "live": 1, "fromLog": None}}
    keys = keys | {"payable:ghost:USD", "payable:naught:USD"}
    assert await check(p, balance_drift, FULL) == Result("BALANCE_DRIFT", CRITICAL, drift, True,
                                                         len(now) + len(now) - 1 + 2, keys)

    await pool.execute("DELETE FROM balances WHERE account IN ('payable:ghost', 'payable:naught')")
    net = now[("payable:p1", "USD")]
    await pool.execute("DELETE FROM balances WHERE account = 'payable:p1'")  # posted in the log, gone from balances
    gone = {"payable:p1:USD": {"account": "payable:p1", "currency": "USD", "live": None, "fromLog": net}}
    assert net != 0
    result = await check(p, balance_drift, FULL)
    assert (result.findings, result.examined) == (gone, len(now) + len(now) - 2)


async def test_balance_entries_drift_checks_the_accounts_of_the_recent_groups(p: Pipeline) -> None:
    pool = p.store.pool
    assert await check(p, balance_entries_drift, FULL) == Result("BALANCE_ENTRIES_DRIFT", CRITICAL, {}, False, 0)
    await run_command(p.store, META, lambda u: platform.fund_escrow(u, escrow.FundEscrow("esc-e", 9, "USD")))
    [gid] = [r["group_id"] for r in await pool.fetch(
        "SELECT DISTINCT group_id FROM ledger_entries WHERE group_id NOT IN "
        "(SELECT group_id FROM ledger_entries WHERE account = 'payable:p1')"
        " AND group_id IN (SELECT group_id FROM ledger_entries WHERE account LIKE '%esc-e%')")]
    accounts = [(r["account"], r["currency"]) for r in await pool.fetch(
        "SELECT DISTINCT account, currency FROM ledger_entries WHERE group_id = $1 ORDER BY 1", gid)]
    assert len(accounts) == 2
    checked = frozenset(f"{a}:{c}" for a, c in accounts)
    whole = Result("BALANCE_ENTRIES_DRIFT", CRITICAL, {}, False, 4, checked)
    assert await check(p, balance_entries_drift, ledger(gid)) == whole
    assert await check(p, balance_entries_drift, ledger()) == Result("BALANCE_ENTRIES_DRIFT", CRITICAL, {}, False, 0,
                                                                     frozenset())

    account, currency = accounts[0]
    live = await pool.fetchval("SELECT balance FROM balances WHERE account = $1", account)
    await pool.execute("UPDATE balances SET balance = balance + 4, credits = credits + 4 WHERE account = $1", account)
    drift = {f"{account}:{currency}": {"account": account, "currency": currency, "live": live + 4,
                                       "fromEntries": live}}
    assert await check(p, balance_entries_drift, ledger(gid)) == Result("BALANCE_ENTRIES_DRIFT", CRITICAL, drift,
                                                                        False, 4, checked)
    assert await check(p, balance_entries_drift, FULL) == Result("BALANCE_ENTRIES_DRIFT", CRITICAL, {}, False, 0)


async def test_hash_chain_reports_the_broken_stream_in_the_runs_scope(p: Pipeline) -> None:
    pool = p.store.pool
    await run_command(p.store, META, lambda u: platform.fund_escrow(u, escrow.FundEscrow("esc-h", 100, "USD")))
    await run_command(p.store, META, lambda u: platform.release_escrow(u, escrow.ReleaseEscrow("esc-h", "p1", 50, 0)))
    events = await pool.fetchval("SELECT count(*) FROM events")
    in_stream = await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'escrow-esc-h'")
    assert in_stream >= 2
    recent = Scope(False, ["escrow-esc-h"])
    assert await check(p, hash_chain, FULL) == Result("HASH_CHAIN_BROKEN", CRITICAL, {}, False, events)
    assert await check(p, hash_chain, recent) == Result("HASH_CHAIN_BROKEN", CRITICAL, {}, False, in_stream)

    seq, data = await pool.fetchrow("SELECT seq, data FROM events WHERE stream_id = 'escrow-esc-h' "
                                    "AND stream_version = 1")
    async with pool.acquire() as c, c.transaction():
        await c.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await c.execute("UPDATE events SET data = $2 WHERE seq = $1", seq, {**data, "amount": data["amount"] + 1})
        await c.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    [link] = (await chain_breaks_in_db(pool)).broken
    assert (link.stream_id, link.stream_version, link.seq) == ("escrow-esc-h", 1, seq) and link.reason
    broken = {"escrow-esc-h": {"stream": "escrow-esc-h", "version": 1, "seq": seq, "reason": link.reason}}
    assert await check(p, hash_chain, FULL) == Result("HASH_CHAIN_BROKEN", CRITICAL, broken, False, events)
    assert await check(p, hash_chain, recent) == Result("HASH_CHAIN_BROKEN", CRITICAL, broken, False, in_stream)
    elsewhere = Scope(False, ["escrow-esc-p1"])  # a recent run that did not write esc-h does not read it
    n = await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'escrow-esc-p1'")
    assert n and await check(p, hash_chain, elsewhere) == Result("HASH_CHAIN_BROKEN", CRITICAL, {}, False, n)


async def test_duplicate_payout_reports_another_amount_or_another_provider_id(p: Pipeline) -> None:
    pool = p.store.pool
    ppid = await paid_webhook_stored(p, "po-d")
    event_id = await pool.fetchval("SELECT event_id FROM provider_events")
    none = Result("DUPLICATE_PAYOUT", CRITICAL, {}, True, 0)
    assert await check(p, duplicate_payout, FULL) == none

    await pool.execute("UPDATE provider_events SET amount = 1001")
    amount = {"po-d": {"payoutId": "po-d", "providerPayoutId": ppid, "amount": 1_000, "providerReports": ppid,
                       "providerAmount": 1_001, "providerEventId": event_id}}
    assert await check(p, duplicate_payout, FULL) == Result("DUPLICATE_PAYOUT", CRITICAL, amount, True, 1)
    assert await check(p, duplicate_payout, ledger()) == Result("DUPLICATE_PAYOUT", CRITICAL, amount, True, 1)

    await pool.execute("UPDATE provider_events SET amount = NULL")  # an event without an amount names none
    assert await check(p, duplicate_payout, FULL) == none
    await pool.execute("UPDATE provider_events SET amount = 1000, provider_payout_id = 'po_other'")
    other = {"po-d": {"payoutId": "po-d", "providerPayoutId": ppid, "amount": 1_000, "providerReports": "po_other",
                      "providerAmount": 1_000, "providerEventId": event_id}}
    assert await check(p, duplicate_payout, FULL) == Result("DUPLICATE_PAYOUT", CRITICAL, other, True, 1)
    await pool.execute("UPDATE payouts SET provider_payout_id = NULL")  # we never recorded an id: nothing to differ
    assert await check(p, duplicate_payout, FULL) == none


async def test_every_finding_becomes_an_alert_with_its_details_and_the_remedy_naming_its_ids(
        p: Pipeline, settings: Settings) -> None:
    """The sentinel raises each finding with the check's details and the remedy with the real ids in it."""
    pool = p.store.pool
    ppid = await paid_webhook_stored(p, "po-a")
    p.advance(settings.finalize_grace_minutes + 1)
    await sentinel.run(p.deps, mode="full")
    row = await pool.fetchrow("SELECT * FROM alerts WHERE code = 'FINALIZE_MISSING'")
    assert (row["subject"], row["severity"], row["details"]["providerPayoutId"]) == ("po-a", CRITICAL, ppid)
    assert f"/api/admin/ops/payouts/{ppid}/force-finalize" in row["remedy"] and "{" not in row["remedy"]


def test_remedy_names_the_alerts_ids_and_leaves_an_unknown_placeholder_as_written() -> None:
    assert remedy("FINALIZE_MISSING", {"providerPayoutId": "po_7"}) == (
        "Runbook 'FINALIZE_MISSING Spike': POST /api/admin/ops/payouts/po_7/force-finalize, then ack and resolve "
        "this alert.")
    assert "/api/admin/ops/payouts/{payoutId}/rerun-outbox" in remedy("OUTBOX_STUCK", {"attempts": 3})
    assert remedy("LEDGER_UNBALANCED", {"groupId": "g"}) == REMEDY["LEDGER_UNBALANCED"]


def test_a_subject_is_cleared_only_when_its_condition_was_checked_and_is_gone() -> None:
    found = {"a": {"x": 1}}
    complete = Result("C", CRITICAL, found, True, 1)
    assert complete.cleared("b") and not complete.cleared("a")
    partial = Result("C", CRITICAL, found, False, 2, frozenset({"a", "b"}))
    assert partial.cleared("b") and not partial.cleared("a") and not partial.cleared("c")
    assert not Result("C", CRITICAL, {}, False, 0).cleared("b")
