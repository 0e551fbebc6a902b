"""Escrow: funded once, then released to payees (minus the platform fee) or refunded. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from periodya.domain import accounts
from periodya.domain.decision import Decision, group_id
from periodya.domain.errors import InsufficientFunds, InvalidState, ValidationFailed
from periodya.domain.events import EscrowFunded, EscrowRefunded, EscrowReleased, Event
from periodya.domain.folding import changed, step_for
from periodya.domain.ledger import transfer
from periodya.domain.money import check_amount, check_currency


def stream(escrow_id: str) -> str:
    return f"escrow-{escrow_id}"


@dataclass(frozen=True)
class EscrowState:
    escrow_id: str
    currency: str
    funded: int = 0
    released: int = 0
    refunded: int = 0
    version: int = 0

    @property
    def balance(self) -> int:
        return self.funded - self.released - self.refunded


@dataclass(frozen=True)
class FundEscrow:
    escrow_id: str
    amount: int
    currency: str


@dataclass(frozen=True)
class ReleaseEscrow:
    escrow_id: str
    payee_id: str
    amount: int
    fee_amount: int


@dataclass(frozen=True)
class RefundEscrow:
    escrow_id: str
    amount: int


def _advanced(state: EscrowState, **changes: int) -> EscrowState:
    """`replace(state, version=state.version + 1, **changes)` via folding.changed: replay folds every
    event through here."""
    return changed(state, **changes, version=state.version + 1)


def _funded(_state: EscrowState | None, event: EscrowFunded) -> EscrowState:
    return EscrowState(event.escrow_id, event.currency, funded=event.amount, version=1)


def _released(state: EscrowState, event: EscrowReleased) -> EscrowState:
    return _advanced(state, released=state.released + event.amount + event.fee_amount)


def _refunded(state: EscrowState, event: EscrowRefunded) -> EscrowState:
    return _advanced(state, refunded=state.refunded + event.amount)


def _other(state: EscrowState, _event: Event) -> EscrowState:
    return state


# One step per event type, found by the event's class (folding.step_for).
_STEPS: dict[type[Event], Callable[[Any, Any], EscrowState]] = {
    EscrowFunded: _funded, EscrowReleased: _released, EscrowRefunded: _refunded}


def evolve(state: EscrowState | None, event: Event) -> EscrowState | None:
    step: Callable[[Any, Any], EscrowState] = step_for(_STEPS, type(event), _other)
    if step is _funded:
        return _funded(state, cast(EscrowFunded, event))
    assert state is not None, "escrow events before EscrowFunded"
    return step(state, event)


def decide_fund(state: EscrowState | None, cmd: FundEscrow) -> Decision:
    if state is not None:
        raise InvalidState(f"escrow {cmd.escrow_id}", "funded", "fund", "an escrow is funded once")
    check_amount(cmd.amount)
    check_currency(cmd.currency)
    sid = stream(cmd.escrow_id)
    group = transfer(group_id(sid, 1, "escrow_funded"), "escrow_funded", cmd.currency,
                     (accounts.CASH, accounts.escrow(cmd.escrow_id), cmd.amount))
    return Decision((EscrowFunded(escrow_id=cmd.escrow_id, amount=cmd.amount, currency=cmd.currency),), (group,))


def decide_release(state: EscrowState | None, cmd: ReleaseEscrow) -> Decision:
    if state is None:
        raise InvalidState(f"escrow {cmd.escrow_id}", "absent", "release")
    check_amount(cmd.amount)
    check_amount(cmd.fee_amount, field="feeAmount", allow_zero=True)
    if not cmd.payee_id:
        raise ValidationFailed("payeeId must not be empty")
    total = cmd.amount + cmd.fee_amount
    if total > state.balance:
        raise InsufficientFunds(accounts.escrow(cmd.escrow_id), state.balance, total, state.currency)
    esc = accounts.escrow(cmd.escrow_id)
    group = transfer(group_id(stream(cmd.escrow_id), state.version + 1, "escrow_released"), "escrow_released",
                     state.currency, (esc, accounts.payable(cmd.payee_id), cmd.amount),
                     (esc, accounts.REVENUE, cmd.fee_amount))
    event = EscrowReleased(escrow_id=cmd.escrow_id, payee_id=cmd.payee_id, amount=cmd.amount,
                           fee_amount=cmd.fee_amount, currency=state.currency)
    return Decision((event,), (group,))


def decide_refund(state: EscrowState | None, cmd: RefundEscrow) -> Decision:
    if state is None:
        raise InvalidState(f"escrow {cmd.escrow_id}", "absent", "refund")
    check_amount(cmd.amount)
    if cmd.amount > state.balance:
        raise InsufficientFunds(accounts.escrow(cmd.escrow_id), state.balance, cmd.amount, state.currency)
    group = transfer(group_id(stream(cmd.escrow_id), state.version + 1, "escrow_refunded"), "escrow_refunded",
                     state.currency, (accounts.escrow(cmd.escrow_id), accounts.CASH, cmd.amount))
    event = EscrowRefunded(escrow_id=cmd.escrow_id, amount=cmd.amount, currency=state.currency)
    return Decision((event,), (group,))
