"""The payout state machine as decide/evolve. Pure: times and ids arrive on the command.

    REQUESTED -> SENDING -> SENT -> PAID -> FINALIZED
    SENDING -> REQUESTED (retryable failure, requeue)      SENDING -> FAILED (abandoned, funds back)
    SENT | PAID -> FAILED (provider failed, funds back)     FINALIZED -> FAILED (compensating group)
    REQUESTED | SENDING | SENT | PAID -> QUARANTINED -> CANCELLED (only if never handed to the provider)

Money moves: request reserves payable -> in-flight; finalize moves in-flight -> cash (out); a failure
before finalize reverses in-flight -> payable; a failure after finalize compensates cash -> payable.
While QUARANTINED, the provider's facts (sent, paid) are still recorded, the status stays, and
nothing is sent again; force-finalize may settle a quarantined payout the provider says is paid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from periodya.domain import accounts
from periodya.domain.decision import Decision, group_id
from periodya.domain.errors import InsufficientFunds, InvalidState, ValidationFailed
from periodya.domain.events import (
    Event,
    PayoutCancelled,
    PayoutFinalized,
    PayoutProviderFailed,
    PayoutProviderPaid,
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
from periodya.domain.records import changed, step_for

REQUESTED, SENDING, SENT, PAID, FINALIZED = "REQUESTED", "SENDING", "SENT", "PAID", "FINALIZED"
FAILED, QUARANTINED, CANCELLED = "FAILED", "QUARANTINED", "CANCELLED"
TERMINAL = frozenset({FINALIZED, FAILED, CANCELLED})


def stream(payout_id: str) -> str:
    return f"payout-{payout_id}"


@dataclass(frozen=True)
class PayoutState:
    payout_id: str
    payee_id: str
    amount: int
    currency: str
    destination: str
    status: str = REQUESTED
    provider_payout_id: str | None = None
    provider_status: str | None = None  # "paid" | "failed" as last reported by the provider
    ledger_finalized: bool = False
    funds_returned: bool = False
    quarantine_reason: str | None = None
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    version: int = 0

    @property
    def subject(self) -> str:
        return f"payout {self.payout_id}"


# --- commands ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestPayout:
    payout_id: str
    payee_id: str
    amount: int
    currency: str
    destination: str


def _fail(state: PayoutState, command: str, why: str = "") -> InvalidState:
    return InvalidState(state.subject, state.status, command, why)


def _need(state: PayoutState | None, command: str) -> PayoutState:
    if state is None:
        raise InvalidState("payout", "absent", command)
    return state


def _gid(state: PayoutState, offset: int, kind: str) -> str:
    return group_id(stream(state.payout_id), state.version + offset, kind)


# --- evolve ------------------------------------------------------------------------------------------
def _advanced(state: PayoutState, **changes: object) -> PayoutState:
    """`replace(state, version=state.version + 1, **changes)` via records.changed: replay folds every
    event through here."""
    return changed(state, **changes, version=state.version + 1)


def _requested(_state: PayoutState | None, event: PayoutRequested) -> PayoutState:
    return PayoutState(event.payout_id, event.payee_id, event.amount, event.currency, event.destination, version=1)


def _send_started(s: PayoutState, event: PayoutSendStarted) -> PayoutState:
    return _advanced(s, status=SENDING, attempts=event.attempt, next_attempt_at=None)


def _sent(s: PayoutState, event: PayoutSent) -> PayoutState:
    return _advanced(s, status=s.status if s.status == QUARANTINED else SENT,
                     provider_payout_id=event.provider_payout_id, last_error=None)


def _send_failed(s: PayoutState, event: PayoutSendFailed) -> PayoutState:
    return _advanced(s, status=REQUESTED, last_error=event.error, next_attempt_at=event.next_attempt_at)


def _send_abandoned(s: PayoutState, event: PayoutSendAbandoned) -> PayoutState:
    return _advanced(s, status=FAILED, last_error=event.error)


def _requeued(s: PayoutState, event: PayoutRequeued) -> PayoutState:
    return _advanced(s, status=REQUESTED, next_attempt_at=None, last_error=event.reason)


def _provider_paid(s: PayoutState, event: PayoutProviderPaid) -> PayoutState:
    return _advanced(s, status=s.status if s.status in (QUARANTINED, FINALIZED) else PAID,
                     provider_payout_id=event.provider_payout_id, provider_status="paid")


def _finalized(s: PayoutState, event: PayoutFinalized) -> PayoutState:
    return _advanced(s, status=FINALIZED, ledger_finalized=True)


def _provider_failed(s: PayoutState, event: PayoutProviderFailed) -> PayoutState:
    return _advanced(s, status=FAILED, provider_status="failed",
                     provider_payout_id=event.provider_payout_id or s.provider_payout_id,
                     last_error=event.failure_message or event.failure_code)


def _reversed(s: PayoutState, event: PayoutReversed) -> PayoutState:
    return _advanced(s, funds_returned=True)


def _quarantined(s: PayoutState, event: PayoutQuarantined) -> PayoutState:
    return _advanced(s, status=QUARANTINED, quarantine_reason=event.reason)


def _cancelled(s: PayoutState, event: PayoutCancelled) -> PayoutState:
    return _advanced(s, status=CANCELLED)


def _other(s: PayoutState, event: Event) -> PayoutState:
    return _advanced(s)


# One step per event type, found by the event's class (records.step_for).
_STEPS: dict[type[Event], Callable[[Any, Any], PayoutState]] = {
    PayoutRequested: _requested, PayoutSendStarted: _send_started, PayoutSent: _sent, PayoutSendFailed: _send_failed,
    PayoutSendAbandoned: _send_abandoned, PayoutRequeued: _requeued, PayoutProviderPaid: _provider_paid,
    PayoutFinalized: _finalized, PayoutProviderFailed: _provider_failed, PayoutReversed: _reversed,
    PayoutQuarantined: _quarantined, PayoutCancelled: _cancelled,
}


def evolve(state: PayoutState | None, event: Event) -> PayoutState | None:
    step: Callable[[Any, Any], PayoutState] = step_for(_STEPS, type(event), _other)
    if step is _requested:
        return _requested(state, cast(PayoutRequested, event))
    assert state is not None, "payout events before PayoutRequested"
    return step(state, event)


def fold(events: list[Event]) -> PayoutState | None:
    state: PayoutState | None = None
    for ev in events:
        state = evolve(state, ev)
    return state


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
    s = _need(state, "send")
    if s.status != REQUESTED:
        raise _fail(s, "send")
    if s.next_attempt_at is not None and s.next_attempt_at > now:
        raise _fail(s, "send", f"next attempt not before {s.next_attempt_at.isoformat()}")
    return Decision((PayoutSendStarted(attempt=s.attempts + 1),))


def decide_sent(state: PayoutState | None, provider_payout_id: str, source: Source = "outbox") -> Decision:
    s = _need(state, "record sent")
    if s.provider_payout_id == provider_payout_id:
        return Decision()  # already recorded
    if s.provider_payout_id is not None:
        raise _fail(s, "record sent", f"already sent as {s.provider_payout_id}, provider reports {provider_payout_id}")
    if s.status not in (SENDING, REQUESTED, QUARANTINED):
        raise _fail(s, "record sent")
    return Decision((PayoutSent(provider_payout_id=provider_payout_id, source=source),))


def decide_send_failed(state: PayoutState | None, error: str, next_attempt_at: datetime) -> Decision:
    s = _need(state, "record send failure")
    if s.status != SENDING:
        raise _fail(s, "record send failure")
    return Decision((PayoutSendFailed(attempt=s.attempts, error=error[:500], next_attempt_at=next_attempt_at),))


def decide_abandon(state: PayoutState | None, error: str) -> Decision:
    """Give up sending. Only call when the provider confirmed it holds no payout for this id."""
    s = _need(state, "abandon")
    if s.status not in (SENDING, REQUESTED, QUARANTINED) or s.provider_payout_id is not None:
        raise _fail(s, "abandon")
    gid = _gid(s, 2, "payout_reversed")
    group = transfer(gid, "payout_reversed", s.currency,
                     (accounts.inflight(s.payee_id), accounts.payable(s.payee_id), s.amount))
    return Decision((PayoutSendAbandoned(attempts=s.attempts, error=error[:500]), PayoutReversed(group_id=gid)),
                    (group,))


def decide_requeue(state: PayoutState | None, reason: str) -> Decision:
    s = _need(state, "requeue")
    if s.status not in (SENDING, REQUESTED):
        raise _fail(s, "requeue")
    return Decision((PayoutRequeued(reason=reason),))


def decide_provider_paid(state: PayoutState | None, provider_payout_id: str, source: Source,
                         provider_event_id: str | None = None) -> Decision:
    s = _need(state, "record provider paid")
    if s.provider_payout_id not in (None, provider_payout_id):  # before the duplicate check: evidence of a 2nd payout
        raise _fail(s, "record provider paid", f"provider payout {provider_payout_id} is not {s.provider_payout_id}")
    if s.provider_status == "paid" or s.status in (PAID, FINALIZED):
        return Decision()  # duplicate news
    if s.status not in (SENT, SENDING, REQUESTED, QUARANTINED):
        raise _fail(s, "record provider paid")
    events: list[Event] = []
    if s.provider_payout_id is None:  # accepted by the provider, but our SENT record was lost (crash)
        events.append(PayoutSent(provider_payout_id=provider_payout_id, source=source))
    events.append(PayoutProviderPaid(provider_payout_id=provider_payout_id, provider_event_id=provider_event_id,
                                     source=source))
    return Decision(tuple(events))


def decide_finalize(state: PayoutState | None, source: Source) -> Decision:
    """Move the reserved funds out: in-flight -> cash. Only once the provider said paid."""
    s = _need(state, "finalize")
    if s.ledger_finalized:
        return Decision()
    if s.provider_status != "paid" or s.status not in (PAID, QUARANTINED):
        raise _fail(s, "finalize", "the provider has not reported it paid")
    gid = _gid(s, 1, "payout_finalized")
    group = transfer(gid, "payout_finalized", s.currency, (accounts.inflight(s.payee_id), accounts.CASH, s.amount))
    return Decision((PayoutFinalized(group_id=gid, source=source),), (group,))


def decide_provider_failed(state: PayoutState | None, provider_payout_id: str | None, source: Source, *,
                           failure_code: str | None = None, failure_message: str | None = None,
                           provider_event_id: str | None = None) -> Decision:
    """The provider says failed/canceled: funds go back to payable. After finalize, a compensating group
    (cash -> payable) undoes the finalize, never an edit."""
    s = _need(state, "record provider failed")
    if provider_payout_id is not None and s.provider_payout_id not in (None, provider_payout_id):
        # Returning funds on another provider payout's failure would create money if ours pays.
        raise _fail(s, "record provider failed", f"provider payout {provider_payout_id} is not {s.provider_payout_id}")
    if s.provider_status == "failed" or s.status in (FAILED, CANCELLED):
        return Decision()
    if s.status not in (SENT, PAID, FINALIZED, SENDING, QUARANTINED):
        raise _fail(s, "record provider failed")
    failed = PayoutProviderFailed(provider_payout_id=provider_payout_id, failure_code=failure_code,
                                  failure_message=failure_message, provider_event_id=provider_event_id, source=source)
    gid = _gid(s, 2, "payout_compensated" if s.ledger_finalized else "payout_reversed")
    source_account = accounts.CASH if s.ledger_finalized else accounts.inflight(s.payee_id)
    group = transfer(gid, "payout_compensated" if s.ledger_finalized else "payout_reversed", s.currency,
                     (source_account, accounts.payable(s.payee_id), s.amount))
    return Decision((failed, PayoutReversed(group_id=gid, compensating=s.ledger_finalized)), (group,))


def decide_quarantine(state: PayoutState | None, reason: str) -> Decision:
    s = _need(state, "quarantine")
    if not reason.strip():
        raise ValidationFailed("reason must not be empty")
    if s.status == QUARANTINED:
        return Decision()
    if s.status in TERMINAL:
        raise _fail(s, "quarantine")
    return Decision((PayoutQuarantined(reason=reason.strip()),))


def decide_cancel(state: PayoutState | None, reason: str, *, provider_has_none: bool) -> Decision:
    """Cancel a quarantined payout the provider never got: funds back (in-flight -> payable).

    `provider_has_none` must be True unless no send was ever attempted: a send whose answer was lost
    may still have created the payout at the provider, and returning the funds then would create money.
    """
    s = _need(state, "cancel")
    if not reason.strip():
        raise ValidationFailed("reason must not be empty")
    if s.status == CANCELLED:
        return Decision()
    if s.status != QUARANTINED:
        raise _fail(s, "cancel", "only a quarantined payout can be cancelled")
    if s.provider_payout_id is not None or (s.attempts > 0 and not provider_has_none):
        raise _fail(s, "cancel", "the payout was handed to the provider")
    gid = _gid(s, 2, "payout_reversed")
    group = transfer(gid, "payout_reversed", s.currency,
                     (accounts.inflight(s.payee_id), accounts.payable(s.payee_id), s.amount))
    return Decision((PayoutCancelled(reason=reason.strip()), PayoutReversed(group_id=gid)), (group,))
