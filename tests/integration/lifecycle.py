"""The payout lifecycle as the tests drive it: the production commands (periodya.handlers.lifecycle)
plus shortcuts that record a provider fact directly, to bring a payout to a stage without the
provider. The shortcuts decide with the production rules (settlement.settle for paid and failed), so
a test that uses them sees exactly what the webhooks job would record; they moved here from
periodya.handlers.lifecycle, where nothing but tests called them."""

from __future__ import annotations

from periodya.domain import payout
from periodya.domain.decision import Decision
from periodya.domain.events import Source
from periodya.domain.payout import PayoutState
from periodya.domain.settlement import ProviderOutcome, Record, Refused, settle
from periodya.handlers.lifecycle import decide, quarantine, start_send
from periodya.handlers.unit_of_work import UnitOfWork

__all__ = ["cancel", "decide", "finalize", "quarantine", "record_failed", "record_paid", "record_sent", "start_send"]


async def _settle(uow: UnitOfWork, payout_id: str, outcome: ProviderOutcome) -> PayoutState:
    def step(state: PayoutState | None) -> Decision:
        assert state is not None  # decide refused an absent payout (NotFound) before this step
        settled = settle(state, outcome)
        if isinstance(settled, Refused):
            raise settled.error
        return settled.decision if isinstance(settled, Record) else Decision()

    return await decide(uow, payout_id, step)


async def record_sent(uow: UnitOfWork, payout_id: str, provider_payout_id: str, source: Source) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_sent(s, provider_payout_id, source))


async def record_paid(uow: UnitOfWork, payout_id: str, provider_payout_id: str, source: Source,
                      provider_event_id: str | None = None) -> PayoutState:
    """Provider says paid: recorded and, unless quarantined, the ledger finalized in the same commit."""
    return await _settle(uow, payout_id, ProviderOutcome("paid", provider_payout_id, source, provider_event_id))


async def record_failed(uow: UnitOfWork, payout_id: str, provider_payout_id: str, source: Source, *,
                        failure_code: str | None = None, failure_message: str | None = None,
                        provider_event_id: str | None = None) -> PayoutState:
    return await _settle(uow, payout_id, ProviderOutcome("failed", provider_payout_id, source, provider_event_id,
                                                         failure_code, failure_message))


async def finalize(uow: UnitOfWork, payout_id: str, source: Source) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_finalize(s, source))


async def cancel(uow: UnitOfWork, payout_id: str, reason: str, *, provider_has_none: bool) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_cancel(s, reason, provider_has_none=provider_has_none))
