"""Escrow decide/evolve, given/when/then: funded once, then released (minus the fee) or refunded."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given as hgiven
from hypothesis import settings
from hypothesis import strategies as st

from periodya.domain import accounts, escrow
from periodya.domain.errors import InsufficientFunds, ValidationFailed
from periodya.domain.escrow import (
    EscrowState,
    FundEscrow,
    RefundEscrow,
    ReleaseEscrow,
    decide_fund,
    decide_refund,
    decide_release,
)
from periodya.domain.events import EscrowFunded, EscrowRefunded, EscrowReleased, LedgerGroupPosted, PostedEntry
from tests.unit.domain_helpers import (
    Books,
    given_for,
    move,
    then_decision,
    then_error,
    then_events,
    then_invalid_state,
    when,
)

given = given_for(escrow.evolve)

E = "e1"
CUR = "EUR"
ESCROW = accounts.escrow(E)
PAYABLE = accounts.payable("p1")
FUNDED = EscrowFunded(escrow_id=E, amount=1000, currency=CUR)


def gid(version: int, kind: str) -> str:
    return f"escrow-{E}@{version}:{kind}"


def released(amount: int, fee: int) -> EscrowReleased:
    return EscrowReleased(escrow_id=E, payee_id="p1", amount=amount, fee_amount=fee, currency=CUR)


def refunded(amount: int) -> EscrowRefunded:
    return EscrowRefunded(escrow_id=E, amount=amount, currency=CUR)


# --- fund --------------------------------------------------------------------------------------------


def test_fund_moves_cash_into_escrow() -> None:
    outcome = when(decide_fund, given(), FundEscrow(E, 1000, CUR))
    then_events(outcome, FUNDED, groups=[move(gid(1, "escrow_funded"), "escrow_funded", CUR,
                                              (accounts.CASH, ESCROW, 1000))])


@pytest.mark.parametrize("history", [(FUNDED,), (FUNDED, released(400, 10)), (FUNDED, refunded(1000))],
                         ids=["funded", "released", "refunded"])
def test_an_escrow_is_funded_only_once(history: tuple[EscrowFunded, ...]) -> None:
    outcome = when(decide_fund, given(*history), FundEscrow(E, 1000, CUR))
    err = then_invalid_state(outcome, "funded", "fund")
    assert err.subject == f"escrow {E}"


@pytest.mark.parametrize(("amount", "currency"), [(0, CUR), (-1, CUR), (True, CUR), (1.5, CUR), (2**62, CUR),
                                                  (10, "eur"), (10, "XXX"), (10, "")])
def test_fund_refuses_bad_amount_or_currency(amount: int, currency: str) -> None:
    then_error(when(decide_fund, given(), FundEscrow(E, amount, currency)), ValidationFailed)


# --- release -----------------------------------------------------------------------------------------


def test_release_splits_amount_to_payable_and_fee_to_revenue() -> None:
    outcome = when(decide_release, given(FUNDED), ReleaseEscrow(E, "p1", 700, 50))
    then_events(outcome, released(700, 50), groups=[move(gid(2, "escrow_released"), "escrow_released", CUR,
                                                          (ESCROW, PAYABLE, 700), (ESCROW, accounts.REVENUE, 50))])


def test_release_without_fee_posts_a_single_move() -> None:
    outcome = when(decide_release, given(FUNDED), ReleaseEscrow(E, "p1", 700, 0))
    decision = then_events(outcome, released(700, 0), groups=[move(gid(2, "escrow_released"), "escrow_released",
                                                                    CUR, (ESCROW, PAYABLE, 700))])
    assert len(decision.groups[0].entries) == 2


def test_release_may_empty_the_escrow_exactly() -> None:
    state = given(FUNDED)
    decision = then_decision(when(decide_release, state, ReleaseEscrow(E, "p1", 950, 50)))
    for event in decision.events:
        state = escrow.evolve(state, event)
    assert state is not None and (state.balance, state.released) == (0, 1000)
    [group] = decision.groups
    assert sum(e.debit for e in group.entries if e.account == ESCROW) == 1000  # all of it left the escrow


@pytest.mark.parametrize(("history", "amount", "fee", "available"), [
    ((FUNDED,), 1001, 0, 1000),
    ((FUNDED,), 1000, 1, 1000),   # the amount alone fits, the fee does not
    ((FUNDED, released(600, 0)), 300, 101, 400),
    ((FUNDED, refunded(1000)), 1, 0, 0),
])
def test_release_of_more_than_the_balance_is_refused(history: tuple[EscrowFunded, ...], amount: int, fee: int,
                                                     available: int) -> None:
    err = then_error(when(decide_release, given(*history), ReleaseEscrow(E, "p1", amount, fee)), InsufficientFunds)
    assert (err.account, err.available, err.requested, err.currency) == (ESCROW, available, amount + fee, CUR)


def test_release_of_an_absent_escrow_is_refused() -> None:
    then_invalid_state(when(decide_release, given(), ReleaseEscrow(E, "p1", 10, 0)), "absent", "release")


@pytest.mark.parametrize(("payee", "amount", "fee"), [("p1", 0, 10), ("p1", -5, 0), ("p1", 10, -1),
                                                      ("p1", 10, True), ("", 10, 0)])
def test_release_refuses_bad_arguments(payee: str, amount: int, fee: int) -> None:
    then_error(when(decide_release, given(FUNDED), ReleaseEscrow(E, payee, amount, fee)), ValidationFailed)


# --- refund ------------------------------------------------------------------------------------------


def test_refund_moves_escrow_back_to_cash() -> None:
    outcome = when(decide_refund, given(FUNDED), RefundEscrow(E, 300))
    then_events(outcome, refunded(300), groups=[move(gid(2, "escrow_refunded"), "escrow_refunded", CUR,
                                                      (ESCROW, accounts.CASH, 300))])


def test_refund_of_the_whole_remaining_balance_is_allowed() -> None:
    state = given(FUNDED, released(600, 50))
    outcome = when(decide_refund, state, RefundEscrow(E, 350))
    then_events(outcome, refunded(350), groups=[move(gid(3, "escrow_refunded"), "escrow_refunded", CUR,
                                                      (ESCROW, accounts.CASH, 350))])


@pytest.mark.parametrize(("history", "amount", "available"), [
    ((FUNDED,), 1001, 1000), ((FUNDED, released(600, 50)), 351, 350), ((FUNDED, refunded(1000)), 1, 0),
])
def test_refund_of_more_than_the_balance_is_refused(history: tuple[EscrowFunded, ...], amount: int,
                                                    available: int) -> None:
    err = then_error(when(decide_refund, given(*history), RefundEscrow(E, amount)), InsufficientFunds)
    assert (err.account, err.available, err.requested) == (ESCROW, available, amount)


def test_refund_of_an_absent_escrow_is_refused() -> None:
    then_invalid_state(when(decide_refund, given(), RefundEscrow(E, 10)), "absent", "refund")


@pytest.mark.parametrize("amount", [0, -1, True, 2**62])
def test_refund_refuses_bad_amounts(amount: int) -> None:
    then_error(when(decide_refund, given(FUNDED), RefundEscrow(E, amount)), ValidationFailed)


# --- evolve and group ids ----------------------------------------------------------------------------


def test_evolve_tracks_funded_released_with_fee_refunded_and_version() -> None:
    assert given(FUNDED) == EscrowState(E, CUR, funded=1000, version=1)
    state = given(FUNDED, released(300, 20), refunded(100), released(50, 0))
    assert state == EscrowState(E, CUR, funded=1000, released=370, refunded=100, version=4)
    assert state.balance == 530


def test_evolve_ignores_events_of_other_streams() -> None:
    state = given(FUNDED)
    other = LedgerGroupPosted(group_id="g", kind="k", subject="s", entries=(
        PostedEntry(account="a", currency=CUR, debit=1, credit=0),
        PostedEntry(account="b", currency=CUR, debit=0, credit=1)))
    assert escrow.evolve(state, other) == state


def test_group_ids_are_deterministic_from_stream_and_version() -> None:
    state = given(FUNDED, released(100, 0))
    first = then_decision(when(decide_release, state, ReleaseEscrow(E, "p2", 100, 5)))
    again = then_decision(when(decide_release, state, ReleaseEscrow(E, "p2", 100, 5)))
    assert first == again
    assert first.groups[0].group_id == gid(3, "escrow_released") == f"{escrow.stream(E)}@3:escrow_released"
    refund = then_decision(when(decide_refund, state, RefundEscrow(E, 10)))
    assert refund.groups[0].group_id == gid(3, "escrow_refunded")


def test_a_whole_life_conserves_money_and_keeps_the_escrow_account_equal_to_the_state() -> None:
    books, state = Books(), None
    steps: list[tuple[Any, Any]] = [
        (decide_fund, FundEscrow(E, 1000, CUR)), (decide_release, ReleaseEscrow(E, "p1", 600, 40)),
        (decide_release, ReleaseEscrow(E, "p2", 200, 0)), (decide_refund, RefundEscrow(E, 160))]
    for decide, cmd in steps:
        decision = then_decision(when(decide, state, cmd))
        for event in decision.events:
            state = escrow.evolve(state, event)
        books.post(decision.groups)
        assert state is not None and books(ESCROW, CUR) == state.balance
    assert books(ESCROW, CUR) == 0
    assert books(accounts.CASH, CUR) == -1000 + 160
    assert (books(PAYABLE, CUR), books(accounts.payable("p2"), CUR), books(accounts.REVENUE, CUR)) == (600, 200, 40)
    assert len(set(books.group_ids)) == 4


OPS = st.lists(st.tuples(st.sampled_from(["release", "refund"]), st.integers(1, 700), st.integers(0, 100)),
               max_size=12)


@settings(max_examples=150)
@hgiven(st.integers(1, 2000), OPS)
def test_escrow_never_overdraws_whatever_is_asked(funded: int, ops: list[tuple[str, int, int]]) -> None:
    books, state = Books(), None
    decision = decide_fund(state, FundEscrow(E, funded, CUR))
    state = escrow.evolve(state, decision.events[0])
    books.post(decision.groups)
    for op, amount, fee in ops:
        assert state is not None
        before = state.balance
        if op == "release":
            outcome = when(decide_release, state, ReleaseEscrow(E, "p1", amount, fee))
            asked = amount + fee
        else:
            outcome = when(decide_refund, state, RefundEscrow(E, amount))
            asked = amount
        if asked > before:
            then_error(outcome, InsufficientFunds)
            continue
        decision = then_decision(outcome)
        for event in decision.events:
            state = escrow.evolve(state, event)
        books.post(decision.groups)
        assert state is not None and state.balance == before - asked == books(ESCROW, CUR)
