"""The payout's state and how its events fold into it (evolve). Pure: no I/O, no clock, no ids.

    REQUESTED -> SENDING -> SENT -> PAID -> FINALIZED
    SENDING -> REQUESTED (retryable failure, requeue)      SENDING -> FAILED (abandoned, funds back)
    SENT | PAID -> FAILED (provider failed, funds back)     FINALIZED -> FAILED (compensating group)
    REQUESTED | SENDING | SENT | PAID -> QUARANTINED -> CANCELLED (only if never handed to the provider)

While QUARANTINED, the provider's facts (sent, paid) are still recorded and the status stays. The
decisions live in payout.py (request, send, quarantine, cancel) and settlement.py (the provider's
word: paid, failed, finalize); payout.py is the aggregate's one public face.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from periodya.domain.decision import group_id
from periodya.domain.errors import InvalidState
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
)
from periodya.domain.folding import changed, step_for

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


# --- what every decide function shares ---------------------------------------------------------------
def refusal(state: PayoutState, command: str, why: str = "") -> InvalidState:
    """The typed refusal of `command` in `state`'s status (HTTP 409 INVALID_STATE)."""
    return InvalidState(state.subject, state.status, command, why)


def existing(state: PayoutState | None, command: str) -> PayoutState:
    """`state`, or the refusal of `command` on an absent payout."""
    if state is None:
        raise InvalidState("payout", "absent", command)
    return state


def group_id_for(state: PayoutState, offset: int, kind: str) -> str:
    """The group id of a ledger group caused by the decision's `offset`-th event (decision.group_id)."""
    return group_id(stream(state.payout_id), state.version + offset, kind)


# --- evolve ------------------------------------------------------------------------------------------
def _advanced(state: PayoutState, **changes: object) -> PayoutState:
    """`replace(state, version=state.version + 1, **changes)` via folding.changed: replay folds every
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


# One step per event type, found by the event's class (folding.step_for).
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
