"""Ask the provider about one payout and apply its answer with the one rule (settlement.settle).

The reconcile-pull job runs this for each payout it claims; the admin force-reconcile runs it for the
payout it names, and force-finalize reads the provider's answer as the same word (`outcome_of`). The
caller holds the payout stream's lock (the job's try-lock, or the command's transaction), so two
callers never apply one answer twice; the append's expected version is the backstop.
"""

from __future__ import annotations

from datetime import datetime

from periodya.deps import Deps
from periodya.domain import payout
from periodya.domain.events import Source
from periodya.domain.settlement import NothingToDo, ProviderOutcome, Refused, settle
from periodya.handlers.unit_of_work import UnitOfWork
from periodya.provider.port import ProviderError, ProviderPayout


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
