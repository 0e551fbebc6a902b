"""Payout lifecycle commands used by the runners and the admin ops API.

Each runs in one unit of work: lock the payout stream, fold it, decide (possibly several steps in
a row, e.g. provider paid then finalize), and commit with the expected version. Losing a race shows
up as a version conflict (retried from scratch by run_command) or as an InvalidState on re-decision.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from periodya.domain import payout
from periodya.domain.decision import Decision
from periodya.domain.errors import NotFound
from periodya.domain.events import Event, Source
from periodya.domain.ledger import LedgerGroup
from periodya.domain.payout import PayoutState
from periodya.handlers.unit_of_work import UnitOfWork

Step = Callable[[PayoutState | None], Decision]


def chain(state: PayoutState | None, *steps: Step) -> Decision:
    """Run decide steps one after another, each on the state the previous one's events produce."""
    events: list[Event] = []
    groups: list[LedgerGroup] = []
    for step in steps:
        decision = step(state)
        for ev in decision.events:
            state = payout.evolve(state, ev)
        events.extend(decision.events)
        groups.extend(decision.groups)
    return Decision(tuple(events), tuple(groups))


async def decide(uow: UnitOfWork, payout_id: str, *steps: Step) -> PayoutState:
    """Load, decide with `steps`, commit. Returns the state after the new events."""
    state = await uow.load_payout(payout_id)
    if state is None:
        raise NotFound(f"no payout {payout_id!r}")
    decision = chain(state, *steps)
    await uow.commit(payout.stream(payout_id), state.version, decision)
    for ev in decision.events:
        state = payout.evolve(state, ev)
    assert state is not None
    return state


async def start_send(uow: UnitOfWork, payout_id: str, now: datetime) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_start_send(s, now))


async def record_sent(uow: UnitOfWork, payout_id: str, provider_payout_id: str, source: Source) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_sent(s, provider_payout_id, source))


async def record_send_failed(uow: UnitOfWork, payout_id: str, error: str, next_attempt_at: datetime) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_send_failed(s, error, next_attempt_at))


async def abandon(uow: UnitOfWork, payout_id: str, error: str) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_abandon(s, error))


async def requeue(uow: UnitOfWork, payout_id: str, reason: str) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_requeue(s, reason))


async def record_paid(uow: UnitOfWork, payout_id: str, provider_payout_id: str, source: Source,
                      provider_event_id: str | None = None, *, finalize: bool = True) -> PayoutState:
    """Provider says paid: record it and, unless quarantined, finalize the ledger in the same commit."""
    steps: list[Step] = [lambda s: payout.decide_provider_paid(s, provider_payout_id, source, provider_event_id)]
    if finalize:
        steps.append(lambda s: payout.decide_finalize(s, source) if s is not None and s.status == payout.PAID
                     else Decision())
    return await decide(uow, payout_id, *steps)


async def record_failed(uow: UnitOfWork, payout_id: str, provider_payout_id: str | None, source: Source, *,
                        failure_code: str | None = None, failure_message: str | None = None,
                        provider_event_id: str | None = None) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_provider_failed(
        s, provider_payout_id, source, failure_code=failure_code, failure_message=failure_message,
        provider_event_id=provider_event_id))


async def finalize(uow: UnitOfWork, payout_id: str, source: Source) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_finalize(s, source))


async def quarantine(uow: UnitOfWork, payout_id: str, reason: str) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_quarantine(s, reason))


async def cancel(uow: UnitOfWork, payout_id: str, reason: str, *, provider_has_none: bool) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_cancel(s, reason, provider_has_none=provider_has_none))
