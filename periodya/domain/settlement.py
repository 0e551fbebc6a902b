"""The provider-outcome rule, in ONE place: what the provider's word about a payout records.

    paid             -> PayoutProviderPaid (after the PayoutSent a crash lost, if any), then the ledger
                        finalized in the same decision: in-flight -> cash. A QUARANTINED payout records
                        the fact and stays: only the operator's force-finalize (`force=True`) settles it.
    failed, canceled -> PayoutProviderFailed and the funds back: in-flight -> payable, or, once the
                        ledger was finalized, a compensating group cash -> payable (never an edit).
    anything else    -> nothing to do (pending, in transit: the final word is still to come).

`settle` is used by every caller that hears the provider: the webhooks job, reconcile-pull, the
operator's force-reconcile and force-finalize. `adopt` is `settle` for a provider payout found by our
idempotency key (the payout id) for a payout that names none, because the create's answer was lost:
it records the payout sent first (the provider id learned), whatever the word, once the payout found
is for our amount and currency. It is pure (no I/O, no clock, no ids: group ids come
from the stream and its version) and answers with a typed value instead of raising:

    Record(decision, state)   what to append (events and ledger groups) and the state after it
    NothingToDo(why)          a duplicate or late word, or a status that is not final: append nothing
    Refused(error)            the word contradicts what is recorded (another provider payout, paid after
                              a failure, anything but paid under force): append nothing, say why

Why money stays exact: every group moves the payout's own amount between the payee's accounts and
cash, and its id is derived from the stream version it follows, so a group is posted at most once
(a duplicate outcome folds into `NothingToDo`, a racing one fails at the append with a version conflict).
"""

from __future__ import annotations

from dataclasses import dataclass

from periodya.domain import accounts
from periodya.domain.decision import Decision
from periodya.domain.errors import DomainError
from periodya.domain.events import (
    Event,
    PayoutFinalized,
    PayoutProviderFailed,
    PayoutProviderPaid,
    PayoutReversed,
    PayoutSent,
    Source,
)
from periodya.domain.ledger import transfer
from periodya.domain.payout_state import (
    CANCELLED,
    FAILED,
    FINALIZED,
    PAID,
    QUARANTINED,
    REQUESTED,
    SENDING,
    SENT,
    PayoutState,
    evolve,
    existing,
    group_id_for,
    refusal,
)

PAID_WORDS = frozenset({"paid"})
FAILED_WORDS = frozenset({"failed", "canceled"})


@dataclass(frozen=True)
class ProviderOutcome:
    """What the provider said about one payout: its status word ("paid", "failed", "canceled", or a
    word that is not final yet), which provider payout it is about, and who heard it."""

    status: str
    provider_payout_id: str
    source: Source
    provider_event_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    amount: int | None = None
    """The provider payout's amount and currency, when the answer carries them (a retrieve or a lookup
    does, a webhook row does not): `adopt` checks them before naming the provider payout ours."""
    currency: str | None = None


@dataclass(frozen=True)
class Record:
    """Append `decision`; `state` is the payout after its events (a batch decides its next item on it)."""

    decision: Decision
    state: PayoutState


@dataclass(frozen=True)
class NothingToDo:
    why: str


@dataclass(frozen=True)
class Refused:
    error: DomainError


Settlement = Record | NothingToDo | Refused


def settle(state: PayoutState, outcome: ProviderOutcome, *, force: bool = False) -> Settlement:
    """The provider's word `outcome` on the payout `state` (see the module docstring).

    `force` is the operator's force-finalize: anything but paid is refused ("the provider says ..."),
    and a paid payout's ledger is finalized even while it is QUARANTINED."""
    try:
        if outcome.status in PAID_WORDS:
            decision = decide_provider_paid(state, outcome.provider_payout_id, outcome.source,
                                            outcome.provider_event_id)
            after = _after(state, decision)
            if force or after.status == PAID:
                finalize = decide_finalize(after, outcome.source)
                after = _after(after, finalize)
                decision = Decision(decision.events + finalize.events, decision.groups + finalize.groups)
        elif force:
            return Refused(refusal(state, "force-finalize", f"the provider says {outcome.status}"))
        elif outcome.status in FAILED_WORDS:
            decision = decide_provider_failed(state, outcome.provider_payout_id, outcome.source,
                                              failure_code=outcome.failure_code,
                                              failure_message=outcome.failure_message,
                                              provider_event_id=outcome.provider_event_id)
            after = _after(state, decision)
        else:
            return NothingToDo(f"the provider says {outcome.status}")
    except DomainError as exc:
        return Refused(exc)
    if decision.is_noop:
        return NothingToDo(f"already recorded: {outcome.status}")
    return Record(decision, after)


def adopt(state: PayoutState, found: ProviderOutcome, *, force: bool = False) -> Settlement:
    """The provider's word `found` about the payout it holds under our idempotency key, for a payout that
    may name no provider payout yet (a send whose answer was lost, then e.g. quarantined).

    Names one already: exactly `settle`. Names none: the payout found must be for our amount and
    currency (else Refused: it is not ours to record), then PayoutSent (the provider id learned; a
    QUARANTINED payout stays QUARANTINED) and `settle` on the state after it. A word that is not final
    still records the PayoutSent; under `force` anything but paid is refused and nothing is recorded."""
    if state.provider_payout_id is not None:
        return settle(state, found, force=force)
    if force and found.status not in PAID_WORDS:
        return Refused(refusal(state, "force-finalize", f"the provider says {found.status}"))
    if (found.amount, found.currency) != (state.amount, state.currency):
        return Refused(refusal(state, "record sent", f"provider payout {found.provider_payout_id} is for "
                               f"{found.amount} {found.currency}, not {state.amount} {state.currency}"))
    if state.status not in (SENDING, REQUESTED, QUARANTINED):
        return Refused(refusal(state, "record sent", f"the provider holds {found.provider_payout_id}"))
    sent = Decision((PayoutSent(provider_payout_id=found.provider_payout_id, source=found.source),))
    after = _after(state, sent)
    settled = settle(after, found, force=force)
    if isinstance(settled, Record):
        return Record(Decision(sent.events + settled.decision.events, settled.decision.groups), settled.state)
    if isinstance(settled, NothingToDo):
        return Record(sent, after)
    return settled


def _after(state: PayoutState, decision: Decision) -> PayoutState:
    for event in decision.events:
        folded = evolve(state, event)
        assert folded is not None
        state = folded
    return state


# --- the three facts, one decision each (settle chains them) -------------------------------------------
def decide_provider_paid(state: PayoutState | None, provider_payout_id: str, source: Source,
                         provider_event_id: str | None = None) -> Decision:
    s = existing(state, "record provider paid")
    if s.provider_payout_id not in (None, provider_payout_id):  # before the duplicate check: evidence of a 2nd payout
        raise refusal(s, "record provider paid", f"provider payout {provider_payout_id} is not {s.provider_payout_id}")
    if s.provider_status == "paid" or s.status in (PAID, FINALIZED):
        return Decision()  # duplicate news
    if s.status not in (SENT, SENDING, REQUESTED, QUARANTINED):
        raise refusal(s, "record provider paid")
    events: list[Event] = []
    if s.provider_payout_id is None:  # accepted by the provider, but our SENT record was lost (crash)
        events.append(PayoutSent(provider_payout_id=provider_payout_id, source=source))
    events.append(PayoutProviderPaid(provider_payout_id=provider_payout_id, provider_event_id=provider_event_id,
                                     source=source))
    return Decision(tuple(events))


def decide_finalize(state: PayoutState | None, source: Source) -> Decision:
    """Move the reserved funds out: in-flight -> cash. Only once the provider said paid."""
    s = existing(state, "finalize")
    if s.ledger_finalized:
        return Decision()
    if s.provider_status != "paid" or s.status not in (PAID, QUARANTINED):
        raise refusal(s, "finalize", "the provider has not reported it paid")
    group_id = group_id_for(s, 1, "payout_finalized")
    group = transfer(group_id, "payout_finalized", s.currency, (accounts.inflight(s.payee_id), accounts.CASH, s.amount))
    return Decision((PayoutFinalized(group_id=group_id, source=source),), (group,))


def decide_provider_failed(state: PayoutState | None, provider_payout_id: str | None, source: Source, *,
                           failure_code: str | None = None, failure_message: str | None = None,
                           provider_event_id: str | None = None) -> Decision:
    """The provider says failed/canceled: funds go back to payable. After finalize, a compensating group
    (cash -> payable) undoes the finalize, never an edit."""
    s = existing(state, "record provider failed")
    if provider_payout_id is not None and s.provider_payout_id not in (None, provider_payout_id):
        # Returning funds on another provider payout's failure would create money if ours pays.
        raise refusal(s, "record provider failed",
                      f"provider payout {provider_payout_id} is not {s.provider_payout_id}")
    if s.provider_status == "failed" or s.status in (FAILED, CANCELLED):
        return Decision()
    if s.status not in (SENT, PAID, FINALIZED, SENDING, QUARANTINED):
        raise refusal(s, "record provider failed")
    failed = PayoutProviderFailed(provider_payout_id=provider_payout_id, failure_code=failure_code,
                                  failure_message=failure_message, provider_event_id=provider_event_id, source=source)
    kind = "payout_compensated" if s.ledger_finalized else "payout_reversed"
    group_id = group_id_for(s, 2, kind)
    source_account = accounts.CASH if s.ledger_finalized else accounts.inflight(s.payee_id)
    group = transfer(group_id, kind, s.currency, (source_account, accounts.payable(s.payee_id), s.amount))
    return Decision((failed, PayoutReversed(group_id=group_id, compensating=s.ledger_finalized)), (group,))


__all__ = ["FAILED_WORDS", "PAID_WORDS", "NothingToDo", "ProviderOutcome", "Record", "Refused", "Settlement",
           "adopt", "decide_finalize", "decide_provider_failed", "decide_provider_paid", "settle"]
