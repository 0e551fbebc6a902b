"""The sentinel's integrity checks. Each returns the current findings {subject: details} and what it
examined: the whole population (`complete`) or the subjects it checked (`checked`). An open alert of its
code auto-resolves only when its own condition was checked in this run and is gone: its subject is
absent from the findings and the check was complete or checked that subject.

One code, one condition: BALANCE_DRIFT is a balance against the log itself (full runs only: it reads
every LedgerGroupPosted event); BALANCE_ENTRIES_DRIFT is a balance against its ledger_entries rows
(recent runs only: the accounts the groups written since the last run touched).

Every check reports how much it examined: an empty result over nothing examined is not "balanced".
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from periodya.deps import Deps
from periodya.domain.alerts import CRITICAL, WARNING
from periodya.eventstore.verify import chain_breaks_in_db
from periodya.projections import invariants
from periodya.runners.check_result import Result, Scope
from periodya.runners.webhook_check import CODE as WEBHOOK_CODE
from periodya.runners.webhook_check import REMEDY as WEBHOOK_REMEDY
from periodya.runners.webhook_check import webhook_signatures_failing

REMEDY = {
    "FINALIZE_MISSING": "Runbook 'FINALIZE_MISSING Spike': "
                        "POST /api/admin/ops/payouts/{providerPayoutId}/force-finalize, then ack and resolve "
                        "this alert.",
    "LEDGER_UNBALANCED": "Runbook 'LEDGER_UNBALANCED': isolate the ledger group, verify all references. DO NOT attempt "
                         "automated repair. Notify Senior Engineering directly.",
    "OUTBOX_STUCK": "Runbook 'Outbox stuck SENDING': usually self-healed by the repair job; if it persists, "
                    "POST /api/admin/ops/payouts/{payoutId}/rerun-outbox.",
    "SENT_STUCK": "Runbook 'SENT stuck without webhook': self-heals via reconcile-pull; if needed, "
                  "POST /api/admin/ops/payouts/{payoutId}/force-reconcile.",
    "BALANCE_DRIFT": "A balance differs from the log: run `periodya replay --projection balances` to see the rows; "
                     "escalate before rebuilding with --swap.",
    "BALANCE_ENTRIES_DRIFT": "A balance differs from the sum of its ledger_entries rows: run `periodya replay "
                             "--projection ledger --projection balances` to see which table differs from the log; "
                             "escalate before rebuilding with --swap. Resolved by a recent run that checks the "
                             "account again (a new group on it) and finds it whole, or by a human.",
    "HASH_CHAIN_BROKEN": "The log was changed outside the application: run `periodya verify`, preserve evidence, "
                         "escalate to Senior Engineering. Never auto-resolved.",
    "DUPLICATE_PAYOUT": "The provider reports another payout or amount for this payout: quarantine it "
                        "(POST /api/admin/ops/payouts/{payoutId}/quarantine) and reconcile with the provider by hand.",
    "DIGEST_MISMATCH": "A day's events no longer match the digest recorded for that day: the log was changed "
                       "outside the application. Run `periodya verify` and `periodya digest`, preserve "
                       "evidence, escalate to Senior Engineering. Never auto-resolved.",
    "SENTINEL_CHECK_FAILED": "A sentinel check could not run: see details.error and the logs; until it runs again, "
                             "its condition is unknown.",
    "PAYOUT_SEND_ABANDONED": "The outbox gave up on this payout (the provider refused it, or after the attempt "
                             "limit confirmed it holds none) and returned the funds to the payee: check the "
                             "destination with the platform team, then resolve this alert.",
    "ALERTS_CAPPED": "More findings than one run raises: see details.count and query the condition directly.",
}


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def remedy(code: str, details: dict[str, Any]) -> str:
    """The code's remedy with each `{key}` replaced by the alert's details[key] (the real ids); a key the
    details lack (none should) is left as written rather than failing the alert."""
    return _PLACEHOLDER.sub(lambda m: str(details.get(m.group(1), m.group(0))), REMEDY[code])


Check = Callable[[Deps, asyncpg.Connection, Scope], Awaitable[Result]]


async def finalize_missing(deps: Deps, conn: asyncpg.Connection, scope: Scope) -> Result:
    """Provider paid, ledger not finalized after the grace period. 'Provider paid' is what we recorded
    (provider_status) or a stored paid webhook not yet applied (e.g. the webhooks job crashed)."""
    grace = deps.minutes_ago(deps.settings.finalize_grace_minutes)
    rows = await conn.fetch(
        "SELECT payout_id, provider_payout_id, updated_at AS since FROM payouts WHERE provider_status = 'paid' "
        "AND NOT ledger_finalized AND updated_at < $1 "
        "UNION "
        "SELECT p.payout_id, pe.provider_payout_id, pe.received_at FROM provider_events pe JOIN payouts p USING "
        "(payout_id) WHERE pe.applied_seq IS NULL AND pe.status = 'paid' AND pe.received_at < $1 "
        "AND NOT p.ledger_finalized AND p.status NOT IN ('FAILED', 'CANCELLED')", grace)
    findings: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["since"]):
        findings.setdefault(r["payout_id"], {"payoutId": r["payout_id"], "providerPayoutId": r["provider_payout_id"],
                                             "paidSince": r["since"].isoformat()})
    return Result("FINALIZE_MISSING", CRITICAL, findings, True, len(rows))


async def sent_stuck(deps: Deps, conn: asyncpg.Connection, scope: Scope) -> Result:
    rows = await conn.fetch(
        "SELECT payout_id, provider_payout_id, status_changed_at FROM payouts WHERE status = 'SENT' "
        "AND status_changed_at < $1", deps.minutes_ago(deps.settings.sent_stuck_minutes))
    return Result("SENT_STUCK", WARNING, {r["payout_id"]: {
        "payoutId": r["payout_id"], "providerPayoutId": r["provider_payout_id"],
        "sentAt": r["status_changed_at"].isoformat()} for r in rows}, True, len(rows))


async def outbox_stuck(deps: Deps, conn: asyncpg.Connection, scope: Scope) -> Result:
    rows = await conn.fetch(
        "SELECT payout_id, attempts, updated_at FROM outbox WHERE status = 'SENDING' AND updated_at < $1",
        deps.minutes_ago(deps.settings.sending_stuck_minutes))
    return Result("OUTBOX_STUCK", WARNING, {r["payout_id"]: {
        "payoutId": r["payout_id"], "attempts": r["attempts"], "sendingSince": r["updated_at"].isoformat()}
        for r in rows}, True, len(rows))


async def ledger_unbalanced(deps: Deps, conn: asyncpg.Connection, scope: Scope) -> Result:
    where = "" if scope.full else "WHERE group_id = ANY($1::text[])"
    args = [] if scope.full else [scope.groups]
    rows = await conn.fetch(invariants.group_sums(where=where), *args)
    findings = {f"group:{r['group_id']}": {"groupId": r["group_id"], "currency": r["currency"],
                                           "debits": r["debits"], "credits": r["credits"]}
                for r in rows if r["debits"] != r["credits"]}
    totals = await conn.fetch(invariants.currency_totals())
    for t in totals:
        if t["total"] != 0:
            findings[f"currency:{t['currency']}"] = {"currency": t["currency"], "sumOfBalances": t["total"]}
    if not scope.full:
        seen = {r["group_id"] for r in rows}
        for missing in set(scope.groups) - seen:  # a posted group with no entries in the ledger view
            findings[f"group:{missing}"] = {"groupId": missing, "problem": "posted in the log, no ledger entries"}
    return Result("LEDGER_UNBALANCED", CRITICAL, findings, False, len(rows) + len(totals))


LOG_BALANCES = """
SELECT e->>'account' AS account, e->>'currency' AS currency,
       sum((e->>'credit')::bigint - (e->>'debit')::bigint)::bigint AS net
  FROM events, jsonb_array_elements(data->'entries') e
 WHERE event_type = 'LedgerGroupPosted' {where} GROUP BY 1, 2"""


def _drift(code: str, source: str, expected: dict[tuple[str, str], int], live: dict[tuple[str, str], int],
           complete: bool) -> Result:
    keys = set(expected) | set(live)
    findings = {f"{a}:{c}": {"account": a, "currency": c, "live": live.get((a, c)), source: expected.get((a, c))}
                for (a, c) in keys if live.get((a, c), 0) != expected.get((a, c), 0)}
    return Result(code, CRITICAL, findings, complete, len(expected) + len(live),
                  frozenset(f"{a}:{c}" for a, c in keys))


async def balance_drift(deps: Deps, conn: asyncpg.Connection, scope: Scope) -> Result:
    """Every balance against the log itself (its LedgerGroupPosted entries). Full runs only: a recent run
    cannot afford reading the whole log, so it examines nothing and resolves nothing of this code."""
    if not scope.full:
        return Result("BALANCE_DRIFT", CRITICAL, {}, False, 0)
    expected = {(r["account"], r["currency"]): r["net"] for r in await conn.fetch(LOG_BALANCES.format(where=""))}
    live = {(r["account"], r["currency"]): r["balance"]
            for r in await conn.fetch("SELECT account, currency, balance FROM balances")}
    return _drift("BALANCE_DRIFT", "fromLog", expected, live, True)


async def balance_entries_drift(deps: Deps, conn: asyncpg.Connection, scope: Scope) -> Result:
    """The accounts the groups written since the last run touched: each balance against the sum of its
    ledger_entries rows (those accounts are the subjects it checked). Recent runs only: the full run
    checks balances against the log itself (BALANCE_DRIFT) and ledger groups (LEDGER_UNBALANCED), and it
    resolves nothing of this code, whose condition it did not check."""
    if scope.full:
        return Result("BALANCE_ENTRIES_DRIFT", CRITICAL, {}, False, 0)
    touched = await conn.fetch("SELECT DISTINCT account, currency FROM ledger_entries "
                               "WHERE group_id = ANY($1::text[])", scope.groups)
    accounts, currencies = [r["account"] for r in touched], [r["currency"] for r in touched]
    entries = await conn.fetch(invariants.entries_net(where="WHERE (account, currency) IN (SELECT * FROM unnest("
                                                          "$1::text[], $2::text[]))"), accounts, currencies)
    balances = await conn.fetch("SELECT account, currency, balance FROM balances WHERE (account, currency) "
                                "IN (SELECT * FROM unnest($1::text[], $2::text[]))", accounts, currencies)
    expected = {(r["account"], r["currency"]): r["net"] for r in entries}
    live = {(r["account"], r["currency"]): r["balance"] for r in balances}
    return _drift("BALANCE_ENTRIES_DRIFT", "fromEntries", expected, live, False)


async def hash_chain(deps: Deps, conn: asyncpg.Connection, scope: Scope) -> Result:
    report = await chain_breaks_in_db(deps.store.pool, streams=None if scope.full else scope.streams)
    findings = {b.stream_id: {"stream": b.stream_id, "version": b.stream_version, "seq": b.seq, "reason": b.reason}
                for b in report.broken}
    return Result("HASH_CHAIN_BROKEN", CRITICAL, findings, False, report.events)


async def duplicate_payout(deps: Deps, conn: asyncpg.Connection, scope: Scope) -> Result:
    rows = await conn.fetch(
        "SELECT p.payout_id, p.provider_payout_id AS ours, p.amount, pe.provider_payout_id AS theirs, "
        "pe.amount AS their_amount, pe.event_id FROM provider_events pe JOIN payouts p USING (payout_id) "
        "WHERE (pe.provider_payout_id IS DISTINCT FROM p.provider_payout_id AND p.provider_payout_id IS NOT NULL) "
        "OR (pe.amount IS NOT NULL AND pe.amount <> p.amount)")
    findings = {r["payout_id"]: {"payoutId": r["payout_id"], "providerPayoutId": r["ours"], "amount": r["amount"],
                                 "providerReports": r["theirs"], "providerAmount": r["their_amount"],
                                 "providerEventId": r["event_id"]} for r in rows}
    # Every provider event against its payout, in both modes: complete, so a cleared finding resolves.
    return Result("DUPLICATE_PAYOUT", CRITICAL, findings, True, len(rows))


CHECKS: list[Check] = [ledger_unbalanced, finalize_missing, balance_drift, balance_entries_drift, hash_chain,
                       duplicate_payout, outbox_stuck, sent_stuck]
CHECKS.append(webhook_signatures_failing)  # runners/webhook_check.py
REMEDY[WEBHOOK_CODE] = WEBHOOK_REMEDY
