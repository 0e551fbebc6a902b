"""Ask the provider about one payout and apply its answer with the one rule (settlement.settle).

The reconcile-pull job runs this for each payout it claims; the admin force-reconcile runs it for the
payout it names, and force-finalize reads the provider's answer as the same word (`outcome_of`).

A payout that names no provider payout although a send was attempted (the create's answer was lost,
then it was quarantined, so no resend will learn the id) is looked up by our idempotency key, the
payout id (`ask_provider`), and the payout found is recorded ours by settlement.adopt before its word
is applied: the operator's commands never leave such a payout's money in flight for good.

The caller holds the payout stream's lock (the job's try-lock, or the command's transaction), so two
callers never apply one answer twice; the append's expected version is the backstop.
"""

from __future__ import annotations

from datetime import datetime

from periodya.deps import Deps
from periodya.domain import payout
from periodya.domain.events import Source
from periodya.domain.settlement import NothingToDo, ProviderOutcome, Refused, adopt
from periodya.handlers.unit_of_work import UnitOfWork
from periodya.provider.port import ProviderError, ProviderNotFound, ProviderPayout

NOT_HELD = "not_held"
"""reconcile_one's answer when a send was attempted and the provider holds no payout under our key."""


def outcome_of(answer: ProviderPayout, source: Source = "reconcile") -> ProviderOutcome:
    """The provider's answer to a retrieve, as the word settlement.settle decides on."""
    return ProviderOutcome(answer.status, answer.id, source, failure_code=answer.failure_code,
                           failure_message=answer.failure_message, amount=answer.amount, currency=answer.currency)


def may_be_held(state: payout.PayoutState) -> bool:
    """Whether the provider may hold this payout: it names a provider payout, or a send was attempted."""
    return state.provider_payout_id is not None or state.attempts > 0


async def ask_provider(deps: Deps, state: payout.PayoutState) -> ProviderPayout | None:
    """The provider's current view of the payout: by the provider payout it names, else by our
    idempotency key (metadata.payout_id; the provider made at most one under it). None: the lookup
    found none. Raises ProviderError (a provider id the provider does not know: ProviderNotFound)."""
    if state.provider_payout_id is not None:
        return await deps.provider.retrieve_payout(state.provider_payout_id)
    try:
        return await deps.provider.find_by_payout_id(state.payout_id)
    except ProviderNotFound:
        return None


async def still_due(uow: UnitOfWork, payout_id: str, sent_before: datetime) -> bool:
    """Re-checked under the claim: an overlapping run may have settled it since this run listed it."""
    return bool(await uow.conn.fetchval(
        "SELECT 1 FROM payouts WHERE payout_id = $1 AND ((status = 'SENT' AND status_changed_at < $2) "
        "OR (status = 'PAID' AND NOT ledger_finalized))", payout_id, sent_before))


async def reconcile_one(deps: Deps, uow: UnitOfWork, payout_id: str, *,
                        sent_before: datetime | None = None) -> str | None:
    """Ask the provider now and apply its answer (also the admin force-reconcile, which passes no
    `sent_before`). A job run passes its threshold: a payout no longer due is skipped (None).

    "not_sent": no send was ever attempted; NOT_HELD: the provider holds none under our key."""
    if sent_before is not None and not await still_due(uow, payout_id, sent_before):
        return None
    state = await uow.load_payout(payout_id)
    if state is None or not may_be_held(state):
        return "not_sent"
    try:
        answer = await ask_provider(deps, state)
    except ProviderError as exc:
        return f"provider_error: {type(exc).__name__}"
    if answer is None:
        return NOT_HELD
    settled = adopt(state, outcome_of(answer))
    if isinstance(settled, Refused):
        raise settled.error
    if isinstance(settled, NothingToDo):
        return "unchanged"
    await uow.commit(payout.stream(payout_id), state.version, settled.decision)
    return answer.status
