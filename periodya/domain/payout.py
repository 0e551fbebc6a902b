"""The payout aggregate's decisions: request, send, requeue, abandon, quarantine, cancel. Pure: times and
ids arrive on the command. Its one public face: the state and evolve (payout_state.py) and the provider
outcome rule (settlement.py: paid -> finalize, failed -> reverse) are re-exported here.

Money moves: request reserves payable -> in-flight; finalize moves in-flight -> cash (out); a failure
before finalize reverses in-flight -> payable; a failure after finalize compensates cash -> payable.
While QUARANTINED, the provider's facts (sent, paid) are still recorded, the status stays, and
nothing is sent again; force-finalize may settle a quarantined payout the provider says is paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from periodya.domain import accounts
from periodya.domain.decision import Decision, group_id
from periodya.domain.errors import InsufficientFunds, InvalidState, ValidationFailed
from periodya.domain.events import (
    PayoutCancelled,
    PayoutQuarantined,
    PayoutRequested,
    PayoutRequeued,
    PayoutReversed,
    PayoutSendAbandoned,
    PayoutSendFailed,
    PayoutSendStarted,
    PayoutSent,
    Source,
)
from periodya.domain.ledger import transfer
from periodya.domain.money import check_amount, check_currency
from periodya.domain.payout_state import (
    CANCELLED,
    FAILED,
    FINALIZED,
    PAID,
    QUARANTINED,
    REQUESTED,
    SENDING,
    SENT,
    TERMINAL,
    PayoutState,
    evolve,
    existing,
    fold,
    group_id_for,
    refusal,
    stream,
)
from periodya.domain.settlement import decide_finalize, decide_provider_failed, decide_provider_paid

__all__ = ["CANCELLED", "FAILED", "FINALIZED", "PAID", "QUARANTINED", "REQUESTED", "SENDING", "SENT", "TERMINAL",
           "PayoutState", "RequestPayout", "decide_abandon", "decide_cancel", "decide_finalize",
           "decide_provider_failed", "decide_provider_paid", "decide_quarantine", "decide_request", "decide_requeue",
           "decide_send_failed", "decide_sent", "decide_start_send", "evolve", "fold", "stream"]


@dataclass(frozen=True)
class RequestPayout:
    payout_id: str
    payee_id: str
    amount: int
    currency: str
    destination: str


# --- decide ------------------------------------------------------------------------------------------
def decide_request(state: PayoutState | None, cmd: RequestPayout, available: int) -> Decision:
    """Reserve the funds: payable -> in-flight. `available` is the payee's payable balance, read by the
    caller under the account's lock."""
    if state is not None:
        raise InvalidState(f"payout {cmd.payout_id}", state.status, "request", "payout id already used")
    check_amount(cmd.amount)
    check_currency(cmd.currency)
    if not cmd.payee_id or not cmd.destination:
        raise ValidationFailed("payeeId and destination must not be empty")
    if cmd.amount > available:
        raise InsufficientFunds(accounts.payable(cmd.payee_id), available, cmd.amount, cmd.currency)
    group = transfer(group_id(stream(cmd.payout_id), 1, "payout_reserved"), "payout_reserved", cmd.currency,
                     (accounts.payable(cmd.payee_id), accounts.inflight(cmd.payee_id), cmd.amount))
    event = PayoutRequested(payout_id=cmd.payout_id, payee_id=cmd.payee_id, amount=cmd.amount,
                            currency=cmd.currency, destination=cmd.destination)
    return Decision((event,), (group,))


def decide_start_send(state: PayoutState | None, now: datetime) -> Decision:
    s = existing(state, "send")
    if s.status != REQUESTED:
        raise refusal(s, "send")
    if s.next_attempt_at is not None and s.next_attempt_at > now:
        raise refusal(s, "send", f"next attempt not before {s.next_attempt_at.isoformat()}")
    return Decision((PayoutSendStarted(attempt=s.attempts + 1),))


def decide_sent(state: PayoutState | None, provider_payout_id: str, source: Source = "outbox") -> Decision:
    s = existing(state, "record sent")
    if s.provider_payout_id == provider_payout_id:
        return Decision()  # already recorded
    if s.provider_payout_id is not None:
        raise refusal(s, "record sent",
                      f"already sent as {s.provider_payout_id}, provider reports {provider_payout_id}")
    if s.status not in (SENDING, REQUESTED, QUARANTINED):
        raise refusal(s, "record sent")
    return Decision((PayoutSent(provider_payout_id=provider_payout_id, source=source),))


def decide_send_failed(state: PayoutState | None, error: str, next_attempt_at: datetime) -> Decision:
    s = existing(state, "record send failure")
    if s.status != SENDING:
        raise refusal(s, "record send failure")
    return Decision((PayoutSendFailed(attempt=s.attempts, error=error[:500], next_attempt_at=next_attempt_at),))


def decide_abandon(state: PayoutState | None, error: str) -> Decision:
    """Give up sending. Only call when the provider confirmed it holds no payout for this id."""
    s = existing(state, "abandon")
    if s.status not in (SENDING, REQUESTED, QUARANTINED) or s.provider_payout_id is not None:
        raise refusal(s, "abandon")
    gid = group_id_for(s, 2, "payout_reversed")
    group = transfer(gid, "payout_reversed", s.currency,
                     (accounts.inflight(s.payee_id), accounts.payable(s.payee_id), s.amount))
    return Decision((PayoutSendAbandoned(attempts=s.attempts, error=error[:500]), PayoutReversed(group_id=gid)),
                    (group,))


def decide_requeue(state: PayoutState | None, reason: str) -> Decision:
    s = existing(state, "requeue")
    if s.status not in (SENDING, REQUESTED):
        raise refusal(s, "requeue")
    return Decision((PayoutRequeued(reason=reason),))


def decide_quarantine(state: PayoutState | None, reason: str) -> Decision:
    s = existing(state, "quarantine")
    if not reason.strip():
        raise ValidationFailed("reason must not be empty")
    if s.status == QUARANTINED:
        return Decision()
    if s.status in TERMINAL:
        raise refusal(s, "quarantine")
    return Decision((PayoutQuarantined(reason=reason.strip()),))


def decide_cancel(state: PayoutState | None, reason: str, *, provider_has_none: bool) -> Decision:
    """Cancel a quarantined payout the provider never got: funds back (in-flight -> payable).

    `provider_has_none` must be True unless no send was ever attempted: a send whose answer was lost
    may still have created the payout at the provider, and returning the funds then would create money.
    """
    s = existing(state, "cancel")
    if not reason.strip():
        raise ValidationFailed("reason must not be empty")
    if s.status == CANCELLED:
        return Decision()
    if s.status != QUARANTINED:
        raise refusal(s, "cancel", "only a quarantined payout can be cancelled")
    if s.provider_payout_id is not None or (s.attempts > 0 and not provider_has_none):
        raise refusal(s, "cancel", "the payout was handed to the provider")
    gid = group_id_for(s, 2, "payout_reversed")
    group = transfer(gid, "payout_reversed", s.currency,
                     (accounts.inflight(s.payee_id), accounts.payable(s.payee_id), s.amount))
    return Decision((PayoutCancelled(reason=reason.strip()), PayoutReversed(group_id=gid)), (group,))
