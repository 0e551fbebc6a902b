"""The reconcile-pull job (batch 100): ask the provider about payouts with no final word.

Picks payouts SENT for longer than PERIODYA_SENT_STUCK_MINUTES (the webhook never came or failed its
signature) and PAID ones whose ledger is not finalized yet, asks the provider, and applies the answer
exactly as the webhooks job would (settlement.settle, the one rule). Each payout is claimed with a
try-lock on its stream, held across the provider call, so overlapping runs never handle one payout twice.
"""

from __future__ import annotations

from functools import partial

from periodya.deps import Deps
from periodya.domain import payout
from periodya.eventstore.store import stream_lock
from periodya.handlers.provider_answer import reconcile_one
from periodya.runners.base import Summary, claim_and_run

BATCH = 100


async def run(deps: Deps, batch: int = BATCH) -> Summary:
    summary = Summary("reconcile-pull")
    sent_before = deps.minutes_ago(deps.settings.sent_stuck_minutes)
    rows = await deps.store.pool.fetch(
        "SELECT payout_id FROM payouts WHERE (status = 'SENT' AND status_changed_at < $1) "
        "OR (status = 'PAID' AND NOT ledger_finalized) ORDER BY status_changed_at, created_at "
        "LIMIT $2", sent_before, batch)  # ties (one batch's SENT records share a time) by request time
    for row in rows:
        pid = row["payout_id"]
        outcome = await claim_and_run(deps, "reconcile-pull", [stream_lock(payout.stream(pid))],
                                      partial(reconcile_one, deps, payout_id=pid, sent_before=sent_before))
        summary.record(outcome, ok={"paid", "failed", "canceled", "unchanged", "not_sent"})
    return summary
