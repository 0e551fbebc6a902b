"""The reconcile-pull job (batch 100): ask the provider about payouts with no final word.

Picks payouts SENT for longer than PERIODYA_SENT_STUCK_MINUTES (the webhook never came or failed its
signature) and PAID ones whose ledger is not finalized yet, asks the provider, and applies the answer
exactly as the webhooks job would (settlement.settle, the one rule). Each payout is claimed with a
try-lock on its stream, held across the provider call, so overlapping runs never handle one payout twice.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from periodya.deps import Deps
from periodya.domain import payout
from periodya.domain.events import Source
from periodya.domain.settlement import NothingToDo, ProviderOutcome, Refused, settle
from periodya.eventstore.store import stream_lock
from periodya.handlers.unit_of_work import UnitOfWork
from periodya.provider.port import ProviderError, ProviderPayout
from periodya.runners.base import Summary, claim_and_run

BATCH = 100


def outcome_of(answer: ProviderPayout, source: Source = "reconcile") -> ProviderOutcome:
    """The provider's answer to a retrieve, as the word settlement.settle decides on."""
    return ProviderOutcome(answer.status, answer.id, source, failure_code=answer.failure_code,
                           failure_message=answer.failure_message)


async def still_due(uow: UnitOfWork, payout_id: str, sent_before: datetime) -> bool:
    """Re-checked under the claim: an overlapping run may have settled it since this run listed it."""
    return bool(await uow.conn.fetchval(
        "SELECT 1 FROM payouts WHERE payout_id = $1 AND ((status = 'SENT' AND status_changed_at < $2) "
        "OR (status = 'PAID' AND NOT ledger_finalized))", payout_id, sent_before))


async def reconcile_one(deps: Deps, uow: UnitOfWork, payout_id: str, *,
                        sent_before: datetime | None = None) -> str | None:
    """Ask the provider now and apply its answer (also the admin force-reconcile, which passes no
    `sent_before`). A job run passes its threshold: a payout no longer due is skipped (None)."""
    if sent_before is not None and not await still_due(uow, payout_id, sent_before):
        return None
    state = await uow.load_payout(payout_id)
    if state is None or state.provider_payout_id is None:
        return "not_sent"
    try:
        answer = await deps.provider.retrieve_payout(state.provider_payout_id)
    except ProviderError as exc:
        return f"provider_error: {type(exc).__name__}"
    settled = settle(state, outcome_of(answer))
    if isinstance(settled, Refused):
        raise settled.error
    if isinstance(settled, NothingToDo):
        return "unchanged"
    await uow.commit(payout.stream(payout_id), state.version, settled.decision)
    return answer.status


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
