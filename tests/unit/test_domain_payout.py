"""The payout state machine, given/when/then: every decide_* function against every status, then paths.

Each matrix row names, per status, the exact events (and ledger groups) expected, NOOP, or the command
name that InvalidState must report. The histories are explicit events, as the store would hold them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given as hgiven
from hypothesis import settings
from hypothesis import strategies as st

from periodya.domain import accounts, payout
from periodya.domain.decision import Decision
from periodya.domain.errors import DomainError, InsufficientFunds, ValidationFailed
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
from periodya.domain.ledger import LedgerGroup
from periodya.domain.payout import (
    CANCELLED,
    FAILED,
    FINALIZED,
    PAID,
    QUARANTINED,
    REQUESTED,
    SENDING,
    SENT,
    PayoutState,
    RequestPayout,
)
from tests.unit.domain_helpers import (
    Books,
    Outcome,
    given_for,
    move,
    then_decision,
    then_error,
    then_events,
    then_invalid_state,
    then_noop,
    when,
)

given = given_for(payout.evolve)

PO, PAYEE, CUR, AMOUNT, DEST, PPID = "po1", "payee1", "EUR", 600, "acct_dest", "tr_1"
PAYABLE, INFLIGHT, CASH = accounts.payable(PAYEE), accounts.inflight(PAYEE), accounts.CASH
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STATUSES = (REQUESTED, SENDING, SENT, PAID, FINALIZED, FAILED, QUARANTINED, CANCELLED)


def gid(version: int, kind: str) -> str:
    return f"payout-{PO}@{version}:{kind}"


def reserve_group() -> LedgerGroup:
    return move(gid(1, "payout_reserved"), "payout_reserved", CUR, (PAYABLE, INFLIGHT, AMOUNT))


def reversal(version: int) -> LedgerGroup:
    return move(gid(version, "payout_reversed"), "payout_reversed", CUR, (INFLIGHT, PAYABLE, AMOUNT))


def finalize_group(version: int) -> LedgerGroup:
    return move(gid(version, "payout_finalized"), "payout_finalized", CUR, (INFLIGHT, CASH, AMOUNT))


def compensation(version: int) -> LedgerGroup:
    return move(gid(version, "payout_compensated"), "payout_compensated", CUR, (CASH, PAYABLE, AMOUNT))


REQUEST = RequestPayout(PO, PAYEE, AMOUNT, CUR, DEST)
REQUESTED_EV = PayoutRequested(payout_id=PO, payee_id=PAYEE, amount=AMOUNT, currency=CUR, destination=DEST)
PROVIDER_FAILED = PayoutProviderFailed(provider_payout_id=PPID, failure_code="account_closed",
                                       failure_message="Account closed", provider_event_id="evt_2", source="webhook")

# Explicit histories, one per status (versions: REQUESTED 1, SENDING 2, SENT 3, PAID 4, FINALIZED 5,
# FAILED 5, QUARANTINED 3 with one attempt and no provider id, CANCELLED 5).
H_REQUESTED: tuple[Event, ...] = (REQUESTED_EV,)
H_SENDING = (*H_REQUESTED, PayoutSendStarted(attempt=1))
H_SENT = (*H_SENDING, PayoutSent(provider_payout_id=PPID))
H_PAID = (*H_SENT, PayoutProviderPaid(provider_payout_id=PPID, provider_event_id="evt_1", source="webhook"))
H_FINALIZED = (*H_PAID, PayoutFinalized(group_id=gid(5, "payout_finalized"), source="webhook"))
H_FAILED = (*H_SENT, PROVIDER_FAILED, PayoutReversed(group_id=gid(5, "payout_reversed")))
H_QUARANTINED = (*H_SENDING, PayoutQuarantined(reason="stuck"))
H_CANCELLED = (*H_QUARANTINED, PayoutCancelled(reason="ops"), PayoutReversed(group_id=gid(5, "payout_reversed")))
HISTORY = {REQUESTED: H_REQUESTED, SENDING: H_SENDING, SENT: H_SENT, PAID: H_PAID, FINALIZED: H_FINALIZED,
           FAILED: H_FAILED, QUARANTINED: H_QUARANTINED, CANCELLED: H_CANCELLED}


def state_in(status: str) -> PayoutState:
    state = given(*HISTORY[status])
    assert state is not None
    return state


@dataclass(frozen=True)
class Emits:
    events: tuple[Event, ...]
    groups: tuple[LedgerGroup, ...] = field(default=())


NOOP = Emits(())


@dataclass(frozen=True)
class Refused:
    """InvalidState naming the current status and this command (and `why`, when given)."""

    command: str
    why: str = ""


Expected = Emits | Refused


def then_expected(outcome: Outcome, expected: Expected, status: str) -> None:
    if isinstance(expected, Refused):
        err = then_invalid_state(outcome, status, expected.command)
        assert err.subject == f"payout {PO}"
        assert expected.why in str(err)
    elif expected == NOOP:
        then_noop(outcome)
    else:
        then_events(outcome, *expected.events, groups=expected.groups)


def test_each_history_folds_to_its_status() -> None:
    for status in STATUSES:
        assert state_in(status).status == status
    assert (state_in(SENDING).attempts, state_in(QUARANTINED).attempts) == (1, 1)
    assert state_in(QUARANTINED).provider_payout_id is None
    assert state_in(FAILED).funds_returned and state_in(CANCELLED).funds_returned
    assert state_in(FINALIZED).ledger_finalized and not state_in(FAILED).ledger_finalized
    assert [state_in(s).version for s in STATUSES] == [1, 2, 3, 4, 5, 5, 3, 5]


# --- the matrix: one row per decide function, one column per status ---------------------------------

Call = Callable[[PayoutState | None], Decision]
later = T0 + timedelta(minutes=5)

MATRIX: dict[str, tuple[Call, dict[str, Expected]]] = {
    "request": (lambda s: payout.decide_request(s, REQUEST, 10_000),
                {st_: Refused("request", "payout id already used") for st_ in STATUSES}),
    "start_send": (lambda s: payout.decide_start_send(s, T0), {
        REQUESTED: Emits((PayoutSendStarted(attempt=1),)),
        **{st_: Refused("send") for st_ in STATUSES if st_ != REQUESTED}}),
    "sent_same_id": (lambda s: payout.decide_sent(s, PPID), {
        REQUESTED: Emits((PayoutSent(provider_payout_id=PPID, source="outbox"),)),
        SENDING: Emits((PayoutSent(provider_payout_id=PPID, source="outbox"),)),
        SENT: NOOP, PAID: NOOP, FINALIZED: NOOP, FAILED: NOOP,
        QUARANTINED: Emits((PayoutSent(provider_payout_id=PPID, source="outbox"),)),
        CANCELLED: Refused("record sent")}),
    "sent_other_id": (lambda s: payout.decide_sent(s, "tr_other", "repair"), {
        REQUESTED: Emits((PayoutSent(provider_payout_id="tr_other", source="repair"),)),
        SENDING: Emits((PayoutSent(provider_payout_id="tr_other", source="repair"),)),
        SENT: Refused("record sent", "already sent as tr_1"), PAID: Refused("record sent", "already sent as tr_1"),
        FINALIZED: Refused("record sent", "already sent as tr_1"),
        FAILED: Refused("record sent", "already sent as tr_1"),
        QUARANTINED: Emits((PayoutSent(provider_payout_id="tr_other", source="repair"),)),
        CANCELLED: Refused("record sent")}),
    "send_failed": (lambda s: payout.decide_send_failed(s, "timeout", later), {
        SENDING: Emits((PayoutSendFailed(attempt=1, error="timeout", next_attempt_at=later),)),
        **{st_: Refused("record send failure") for st_ in STATUSES if st_ != SENDING}}),
    "abandon": (lambda s: payout.decide_abandon(s, "provider has none"), {
        REQUESTED: Emits((PayoutSendAbandoned(attempts=0, error="provider has none"),
                          PayoutReversed(group_id=gid(3, "payout_reversed"))), (reversal(3),)),
        SENDING: Emits((PayoutSendAbandoned(attempts=1, error="provider has none"),
                        PayoutReversed(group_id=gid(4, "payout_reversed"))), (reversal(4),)),
        QUARANTINED: Emits((PayoutSendAbandoned(attempts=1, error="provider has none"),
                            PayoutReversed(group_id=gid(5, "payout_reversed"))), (reversal(5),)),
        **{st_: Refused("abandon") for st_ in (SENT, PAID, FINALIZED, FAILED, CANCELLED)}}),
    "requeue": (lambda s: payout.decide_requeue(s, "stale"), {
        REQUESTED: Emits((PayoutRequeued(reason="stale"),)), SENDING: Emits((PayoutRequeued(reason="stale"),)),
        **{st_: Refused("requeue") for st_ in (SENT, PAID, FINALIZED, FAILED, QUARANTINED, CANCELLED)}}),
    "provider_paid": (lambda s: payout.decide_provider_paid(s, PPID, "webhook", "evt_9"), {
        REQUESTED: Emits((PayoutSent(provider_payout_id=PPID, source="webhook"),
                          PayoutProviderPaid(provider_payout_id=PPID, provider_event_id="evt_9", source="webhook"))),
        SENDING: Emits((PayoutSent(provider_payout_id=PPID, source="webhook"),
                        PayoutProviderPaid(provider_payout_id=PPID, provider_event_id="evt_9", source="webhook"))),
        SENT: Emits((PayoutProviderPaid(provider_payout_id=PPID, provider_event_id="evt_9", source="webhook"),)),
        PAID: NOOP, FINALIZED: NOOP,
        FAILED: Refused("record provider paid"),
        QUARANTINED: Emits((PayoutSent(provider_payout_id=PPID, source="webhook"),
                            PayoutProviderPaid(provider_payout_id=PPID, provider_event_id="evt_9",
                                               source="webhook"))),
        CANCELLED: Refused("record provider paid")}),
    "finalize": (lambda s: payout.decide_finalize(s, "webhook"), {
        PAID: Emits((PayoutFinalized(group_id=gid(5, "payout_finalized"), source="webhook"),), (finalize_group(5),)),
        FINALIZED: NOOP,
        **{st_: Refused("finalize", "not reported it paid")
           for st_ in (REQUESTED, SENDING, SENT, FAILED, QUARANTINED, CANCELLED)}}),
    "provider_failed": (lambda s: payout.decide_provider_failed(
        s, PPID, "webhook", failure_code="account_closed", failure_message="Account closed",
        provider_event_id="evt_2"), {
        REQUESTED: Refused("record provider failed"),
        SENDING: Emits((PROVIDER_FAILED, PayoutReversed(group_id=gid(4, "payout_reversed"))), (reversal(4),)),
        SENT: Emits((PROVIDER_FAILED, PayoutReversed(group_id=gid(5, "payout_reversed"))), (reversal(5),)),
        PAID: Emits((PROVIDER_FAILED, PayoutReversed(group_id=gid(6, "payout_reversed"))), (reversal(6),)),
        FINALIZED: Emits((PROVIDER_FAILED, PayoutReversed(group_id=gid(7, "payout_compensated"), compensating=True)),
                         (compensation(7),)),
        FAILED: NOOP,
        QUARANTINED: Emits((PROVIDER_FAILED, PayoutReversed(group_id=gid(5, "payout_reversed"))), (reversal(5),)),
        CANCELLED: NOOP}),
    "quarantine": (lambda s: payout.decide_quarantine(s, "  suspicious  "), {
        **{st_: Emits((PayoutQuarantined(reason="suspicious"),)) for st_ in (REQUESTED, SENDING, SENT, PAID)},
        QUARANTINED: NOOP,
        **{st_: Refused("quarantine") for st_ in (FINALIZED, FAILED, CANCELLED)}}),
    "cancel": (lambda s: payout.decide_cancel(s, "ops", provider_has_none=False), {
        QUARANTINED: Refused("cancel", "handed to the provider"),
        CANCELLED: NOOP,
        **{st_: Refused("cancel", "only a quarantined") for st_ in (REQUESTED, SENDING, SENT, PAID, FINALIZED,
                                                                    FAILED)}}),
    "cancel_provider_has_none": (lambda s: payout.decide_cancel(s, " ops ", provider_has_none=True), {
        QUARANTINED: Emits((PayoutCancelled(reason="ops"), PayoutReversed(group_id=gid(5, "payout_reversed"))),
                           (reversal(5),)),
        CANCELLED: NOOP,
        **{st_: Refused("cancel", "only a quarantined") for st_ in (REQUESTED, SENDING, SENT, PAID, FINALIZED,
                                                                    FAILED)}}),
}
ABSENT_COMMAND = {"request": None, "start_send": "send", "sent_same_id": "record sent",
                  "sent_other_id": "record sent", "send_failed": "record send failure", "abandon": "abandon",
                  "requeue": "requeue", "provider_paid": "record provider paid", "finalize": "finalize",
                  "provider_failed": "record provider failed", "quarantine": "quarantine", "cancel": "cancel",
                  "cancel_provider_has_none": "cancel"}


def test_every_matrix_row_covers_every_status() -> None:
    assert all(set(row) == set(STATUSES) for _, row in MATRIX.values())
    assert set(ABSENT_COMMAND) == set(MATRIX)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("name", list(MATRIX))
def test_decide_against_every_status(name: str, status: str) -> None:
    call, row = MATRIX[name]
    then_expected(when(call, state_in(status)), row[status], status)


@pytest.mark.parametrize("name", [n for n, cmd in ABSENT_COMMAND.items() if cmd])
def test_every_command_but_request_is_refused_on_an_absent_payout(name: str) -> None:
    err = then_invalid_state(when(MATRIX[name][0], None), "absent", str(ABSENT_COMMAND[name]))
    assert err.subject == "payout"


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("name", list(MATRIX))
def test_events_of_every_accepted_decision_fold_without_error(name: str, status: str) -> None:
    """Whatever a decision emits must be foldable onto the state it was decided from, and versions
    of caused groups match the version of the event that carries their id."""
    state = state_in(status)
    outcome = when(MATRIX[name][0], state)
    if isinstance(outcome, DomainError):
        return
    for event in outcome.events:
        nxt = payout.evolve(state, event)
        assert nxt is not None
        state = nxt
        if isinstance(event, PayoutReversed | PayoutFinalized):
            assert event.group_id.startswith(f"payout-{PO}@{state.version}:")
    assert sorted(g.group_id for g in outcome.groups) == sorted(
        e.group_id for e in outcome.events if isinstance(e, PayoutReversed | PayoutFinalized))


# --- request -----------------------------------------------------------------------------------------


def test_request_reserves_payable_into_inflight() -> None:
    then_events(when(payout.decide_request, given(), REQUEST, AMOUNT), REQUESTED_EV, groups=[reserve_group()])
    assert given(REQUESTED_EV) == PayoutState(PO, PAYEE, AMOUNT, CUR, DEST, version=1)


def test_request_of_more_than_available_is_refused() -> None:
    err = then_error(when(payout.decide_request, given(), REQUEST, AMOUNT - 1), InsufficientFunds)
    assert (err.account, err.available, err.requested, err.currency) == (PAYABLE, AMOUNT - 1, AMOUNT, CUR)


@pytest.mark.parametrize("cmd", [RequestPayout(PO, PAYEE, 0, CUR, DEST), RequestPayout(PO, PAYEE, -1, CUR, DEST),
                                 RequestPayout(PO, PAYEE, True, CUR, DEST), RequestPayout(PO, PAYEE, 1, "eur", DEST),
                                 RequestPayout(PO, "", 1, CUR, DEST), RequestPayout(PO, PAYEE, 1, CUR, "")])
def test_request_refuses_bad_arguments(cmd: RequestPayout) -> None:
    then_error(when(payout.decide_request, given(), cmd, 10_000), ValidationFailed)


# --- sending -----------------------------------------------------------------------------------------


def test_send_failure_goes_back_to_requested_with_next_attempt_at() -> None:
    state = given(*H_SENDING, PayoutSendFailed(attempt=1, error="timeout", next_attempt_at=later))
    assert state is not None
    assert (state.status, state.next_attempt_at, state.last_error, state.attempts) == (REQUESTED, later, "timeout", 1)


def test_send_failure_error_text_is_truncated() -> None:
    decision = then_decision(when(payout.decide_send_failed, state_in(SENDING), "x" * 2000, later))
    assert decision.events[0].error == "x" * 500  # type: ignore[attr-defined]


def test_start_send_respects_next_attempt_at() -> None:
    state = given(*H_SENDING, PayoutSendFailed(attempt=1, error="timeout", next_attempt_at=later))
    err = then_invalid_state(when(payout.decide_start_send, state, later - timedelta(seconds=1)), REQUESTED, "send")
    assert "next attempt" in str(err) and later.isoformat() in str(err)
    then_events(when(payout.decide_start_send, state, later), PayoutSendStarted(attempt=2))
    then_events(when(payout.decide_start_send, state, later + timedelta(hours=1)), PayoutSendStarted(attempt=2))
    started = given(*H_SENDING, PayoutSendFailed(attempt=1, error="timeout", next_attempt_at=later),
                    PayoutSendStarted(attempt=2))
    assert started is not None and (started.status, started.attempts, started.next_attempt_at) == (SENDING, 2, None)


def test_requeue_clears_the_next_attempt() -> None:
    state = given(*H_SENDING, PayoutRequeued(reason="stuck in sending"))
    assert state is not None
    assert (state.status, state.next_attempt_at, state.last_error) == (REQUESTED, None, "stuck in sending")
    then_events(when(payout.decide_start_send, state, T0), PayoutSendStarted(attempt=2))


def test_sent_is_idempotent_for_the_same_provider_id() -> None:
    then_noop(when(payout.decide_sent, state_in(SENT), PPID, "repair"))
    state = given(*H_SENT)
    assert state is not None and (state.status, state.provider_payout_id) == (SENT, PPID)


def test_abandon_is_refused_once_a_provider_id_is_known_even_when_quarantined() -> None:
    state = given(*H_SENT, PayoutQuarantined(reason="suspicious"))
    then_invalid_state(when(payout.decide_abandon, state, "gone"), QUARANTINED, "abandon")


def test_abandon_returns_the_funds_and_fails_the_payout() -> None:
    state = given(*H_SENDING, PayoutSendAbandoned(attempts=1, error="gone"),
                  PayoutReversed(group_id=gid(4, "payout_reversed")))
    assert state is not None and (state.status, state.funds_returned, state.last_error) == (FAILED, True, "gone")


# --- provider paid / finalize ------------------------------------------------------------------------


def test_provider_paid_from_sending_records_the_lost_sent_first() -> None:
    decision = then_decision(when(payout.decide_provider_paid, state_in(SENDING), PPID, "reconcile"))
    assert [type(e) for e in decision.events] == [PayoutSent, PayoutProviderPaid]
    state = given(*H_SENDING, *decision.events)
    assert state is not None
    assert (state.status, state.provider_payout_id, state.provider_status) == (PAID, PPID, "paid")


def test_provider_paid_for_another_provider_payout_is_refused() -> None:
    err = then_invalid_state(when(payout.decide_provider_paid, state_in(SENT), "tr_other", "webhook"), SENT,
                             "record provider paid")
    assert "tr_other" in str(err)


def test_duplicate_provider_paid_is_a_noop() -> None:
    state = given(*H_SENT)
    decision = then_decision(when(payout.decide_provider_paid, state, PPID, "webhook", "evt_1"))
    state = given(*H_SENT, *decision.events)
    then_noop(when(payout.decide_provider_paid, state, PPID, "reconcile", "evt_1"))
    then_noop(when(payout.decide_provider_paid, state, PPID, "webhook", "evt_other"))


def test_second_finalize_is_a_noop() -> None:
    decision = then_decision(when(payout.decide_finalize, state_in(PAID), "webhook"))
    state = given(*H_PAID, *decision.events)
    assert state is not None and (state.status, state.ledger_finalized) == (FINALIZED, True)
    then_noop(when(payout.decide_finalize, state, "reconcile"))


def test_finalize_after_compensation_is_still_a_noop() -> None:
    state = given(*H_FINALIZED, PROVIDER_FAILED,
                  PayoutReversed(group_id=gid(7, "payout_compensated"), compensating=True))
    assert state is not None and (state.status, state.ledger_finalized, state.funds_returned) == (FAILED, True, True)
    then_noop(when(payout.decide_finalize, state, "admin"))
    then_invalid_state(when(payout.decide_provider_paid, state, PPID, "webhook"), FAILED, "record provider paid")


# --- provider failed ---------------------------------------------------------------------------------


def test_provider_failed_after_finalize_compensates_and_a_duplicate_is_a_noop() -> None:
    decision = then_decision(when(payout.decide_provider_failed, state_in(FINALIZED), PPID, "webhook"))
    assert decision.events[1] == PayoutReversed(group_id=gid(7, "payout_compensated"), compensating=True)
    assert decision.groups == (compensation(7),)
    state = given(*H_FINALIZED, *decision.events)
    assert state is not None and (state.status, state.provider_status) == (FAILED, "failed")
    then_noop(when(payout.decide_provider_failed, state, PPID, "reconcile"))


def test_provider_failed_records_the_failure_on_the_state() -> None:
    state = given(*H_FAILED)
    assert state is not None
    assert (state.provider_status, state.last_error, state.funds_returned) == ("failed", "Account closed", True)


def test_provider_failed_without_a_provider_id_keeps_the_known_one() -> None:
    state = given(*H_SENT, PayoutProviderFailed(provider_payout_id=None, failure_code="x", source="reconcile"))
    assert state is not None and (state.provider_payout_id, state.last_error) == (PPID, "x")


@pytest.mark.parametrize("status", [SENT, PAID, FINALIZED])
def test_provider_failed_for_another_provider_payout_is_refused(status: str) -> None:
    then_invalid_state(when(payout.decide_provider_failed, state_in(status), "tr_other", "webhook"), status,
                       "record provider failed")


# --- quarantine and cancel ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("reason", ["", "   "])
def test_quarantine_and_cancel_need_a_reason(status: str, reason: str) -> None:
    then_error(when(payout.decide_quarantine, state_in(status), reason), ValidationFailed)
    then_error(when(payout.decide_cancel, state_in(status), reason, provider_has_none=True), ValidationFailed)


@pytest.mark.parametrize("status", [REQUESTED, SENDING, SENT, PAID])
def test_quarantine_keeps_what_was_known(status: str) -> None:
    before = state_in(status)
    after = given(*HISTORY[status], PayoutQuarantined(reason="suspicious"))
    assert after is not None
    assert after.status == QUARANTINED and after.quarantine_reason == "suspicious"
    assert (after.provider_payout_id, after.provider_status, after.attempts) == (
        before.provider_payout_id, before.provider_status, before.attempts)


def test_while_quarantined_sent_and_paid_are_recorded_without_leaving_quarantine() -> None:
    sent = then_decision(when(payout.decide_sent, state_in(QUARANTINED), PPID, "repair"))
    state = given(*H_QUARANTINED, *sent.events)
    assert state is not None and (state.status, state.provider_payout_id) == (QUARANTINED, PPID)
    then_invalid_state(when(payout.decide_start_send, state, T0), QUARANTINED, "send")
    paid = then_decision(when(payout.decide_provider_paid, state, PPID, "reconcile"))
    assert paid.events == (PayoutProviderPaid(provider_payout_id=PPID, source="reconcile"),)
    state = given(*H_QUARANTINED, *sent.events, *paid.events)
    assert state is not None and (state.status, state.provider_status) == (QUARANTINED, "paid")
    then_noop(when(payout.decide_provider_paid, state, PPID, "webhook"))
    then_invalid_state(when(payout.decide_cancel, state, "ops", provider_has_none=True), QUARANTINED, "cancel")
    version = state.version
    then_events(when(payout.decide_finalize, state, "admin"),
                PayoutFinalized(group_id=gid(version + 1, "payout_finalized"), source="admin"),
                groups=[finalize_group(version + 1)])


def test_quarantined_payout_never_sent_can_be_cancelled_without_asking_the_provider() -> None:
    state = given(REQUESTED_EV, PayoutQuarantined(reason="fraud check"))
    assert state is not None and state.attempts == 0
    then_events(when(payout.decide_cancel, state, "fraud", provider_has_none=False),
                PayoutCancelled(reason="fraud"), PayoutReversed(group_id=gid(4, "payout_reversed")),
                groups=[reversal(4)])


def test_cancel_is_refused_with_a_provider_id_even_if_the_caller_says_the_provider_has_none() -> None:
    state = given(*H_SENT, PayoutQuarantined(reason="x"))
    err = then_invalid_state(when(payout.decide_cancel, state, "ops", provider_has_none=True), QUARANTINED, "cancel")
    assert "handed to the provider" in str(err)


def test_cancel_after_a_retried_send_needs_the_provider_to_have_none() -> None:
    state = given(*H_SENDING, PayoutSendFailed(attempt=1, error="timeout", next_attempt_at=later),
                  PayoutQuarantined(reason="x"))
    assert state is not None and (state.attempts, state.provider_payout_id) == (1, None)
    then_invalid_state(when(payout.decide_cancel, state, "ops", provider_has_none=False), QUARANTINED, "cancel")
    then_decision(when(payout.decide_cancel, state, "ops", provider_has_none=True))


def test_second_cancel_is_a_noop() -> None:
    decision = then_decision(when(payout.decide_cancel, state_in(QUARANTINED), "ops", provider_has_none=True))
    state = given(*H_QUARANTINED, *decision.events)
    assert state is not None and (state.status, state.funds_returned) == (CANCELLED, True)
    then_noop(when(payout.decide_cancel, state, "ops", provider_has_none=True))
    then_noop(when(payout.decide_cancel, state, "ops", provider_has_none=False))


# --- whole paths: money conservation -----------------------------------------------------------------

START_PAYABLE = 1000


class World:
    """One payout and the books: every step must be balanced, never overdraw, and its group ids unique."""

    def __init__(self) -> None:
        self.books = Books()
        self.books.post([move("seed", "seed", CUR, (CASH, PAYABLE, START_PAYABLE))])
        self.state: PayoutState | None = None

    def run(self, decide: Callable[..., Decision], *args: Any, **kwargs: Any) -> Decision:
        decision = then_decision(when(decide, self.state, *args, **kwargs))
        for event in decision.events:
            self.state = payout.evolve(self.state, event)
        self.books.post(decision.groups)
        return decision

    def money(self) -> tuple[int, int, int]:
        """(payable, in-flight, cash paid out since the seed)."""
        return (self.books(PAYABLE, CUR), self.books(INFLIGHT, CUR), self.books(CASH, CUR) + START_PAYABLE)

    def status(self) -> str:
        assert self.state is not None
        return self.state.status


def requested_and_sending() -> World:
    w = World()
    w.run(payout.decide_request, REQUEST, w.books(PAYABLE, CUR))
    assert w.money() == (START_PAYABLE - AMOUNT, AMOUNT, 0)
    w.run(payout.decide_start_send, T0)
    return w


def test_path_to_finalized() -> None:
    w = requested_and_sending()
    w.run(payout.decide_sent, PPID)
    w.run(payout.decide_provider_paid, PPID, "webhook")
    assert w.money() == (START_PAYABLE - AMOUNT, AMOUNT, 0)
    w.run(payout.decide_finalize, "webhook")
    assert (w.status(), w.money()) == (FINALIZED, (START_PAYABLE - AMOUNT, 0, AMOUNT))
    assert w.run(payout.decide_finalize, "reconcile").is_noop
    assert w.run(payout.decide_provider_paid, PPID, "reconcile").is_noop
    assert w.money() == (START_PAYABLE - AMOUNT, 0, AMOUNT)


def test_path_crash_recovery_paid_while_sending() -> None:
    w = requested_and_sending()
    w.run(payout.decide_provider_paid, PPID, "reconcile")
    w.run(payout.decide_finalize, "reconcile")
    assert (w.status(), w.money()) == (FINALIZED, (START_PAYABLE - AMOUNT, 0, AMOUNT))


def test_path_retry_then_provider_failed() -> None:
    w = requested_and_sending()
    w.run(payout.decide_send_failed, "timeout", later)
    w.run(payout.decide_start_send, later)
    w.run(payout.decide_sent, PPID)
    w.run(payout.decide_provider_failed, PPID, "webhook", failure_code="account_closed")
    assert (w.status(), w.money()) == (FAILED, (START_PAYABLE, 0, 0))
    assert w.run(payout.decide_provider_failed, PPID, "reconcile").is_noop
    assert w.money() == (START_PAYABLE, 0, 0)


def test_path_paid_then_failed_before_finalize() -> None:
    w = requested_and_sending()
    w.run(payout.decide_sent, PPID)
    w.run(payout.decide_provider_paid, PPID, "webhook")
    w.run(payout.decide_provider_failed, PPID, "webhook")
    assert (w.status(), w.money()) == (FAILED, (START_PAYABLE, 0, 0))


def test_path_abandoned() -> None:
    w = requested_and_sending()
    w.run(payout.decide_abandon, "provider has none")
    assert (w.status(), w.money()) == (FAILED, (START_PAYABLE, 0, 0))


def test_path_quarantine_then_cancel() -> None:
    w = requested_and_sending()
    w.run(payout.decide_quarantine, "stuck")
    w.run(payout.decide_cancel, "ops", provider_has_none=True)
    assert (w.status(), w.money()) == (CANCELLED, (START_PAYABLE, 0, 0))
    assert w.run(payout.decide_cancel, "ops", provider_has_none=True).is_noop
    assert w.run(payout.decide_provider_failed, None, "reconcile").is_noop
    assert w.money() == (START_PAYABLE, 0, 0)


def test_path_quarantine_then_force_finalize() -> None:
    w = requested_and_sending()
    w.run(payout.decide_sent, PPID)
    w.run(payout.decide_quarantine, "amount mismatch")
    w.run(payout.decide_provider_paid, PPID, "reconcile")
    assert w.status() == QUARANTINED
    w.run(payout.decide_finalize, "admin")
    assert (w.status(), w.money()) == (FINALIZED, (START_PAYABLE - AMOUNT, 0, AMOUNT))


def test_path_finalized_then_provider_failed() -> None:
    w = requested_and_sending()
    w.run(payout.decide_sent, PPID)
    w.run(payout.decide_provider_paid, PPID, "webhook")
    w.run(payout.decide_finalize, "webhook")
    decision = w.run(payout.decide_provider_failed, PPID, "webhook", failure_code="returned")
    assert decision.groups[0].kind == "payout_compensated"
    assert (w.status(), w.money()) == (FAILED, (START_PAYABLE, 0, 0))
    assert w.run(payout.decide_provider_failed, PPID, "reconcile").is_noop
    assert w.run(payout.decide_finalize, "reconcile").is_noop
    assert w.money() == (START_PAYABLE, 0, 0)


# --- any sequence of commands keeps the books right -------------------------------------------------

COMMANDS: dict[str, Callable[[PayoutState | None], Decision]] = {
    "start_send_now": lambda s: payout.decide_start_send(s, T0),
    "start_send_later": lambda s: payout.decide_start_send(s, later + timedelta(hours=1)),
    "sent": lambda s: payout.decide_sent(s, PPID),
    "sent_other": lambda s: payout.decide_sent(s, "tr_other"),
    "send_failed": lambda s: payout.decide_send_failed(s, "timeout", later),
    "abandon": lambda s: payout.decide_abandon(s, "gone"),
    "requeue": lambda s: payout.decide_requeue(s, "stale"),
    "paid": lambda s: payout.decide_provider_paid(s, PPID, "webhook"),
    "finalize": lambda s: payout.decide_finalize(s, "webhook"),
    "failed": lambda s: payout.decide_provider_failed(s, PPID, "webhook"),
    "failed_no_id": lambda s: payout.decide_provider_failed(s, None, "reconcile"),
    "quarantine": lambda s: payout.decide_quarantine(s, "ops"),
    "cancel": lambda s: payout.decide_cancel(s, "ops", provider_has_none=False),
    "cancel_none": lambda s: payout.decide_cancel(s, "ops", provider_has_none=True),
}
EXPECTED_MONEY = {
    **{s: (START_PAYABLE - AMOUNT, AMOUNT, 0) for s in (REQUESTED, SENDING, SENT, PAID, QUARANTINED)},
    FINALIZED: (START_PAYABLE - AMOUNT, 0, AMOUNT), FAILED: (START_PAYABLE, 0, 0), CANCELLED: (START_PAYABLE, 0, 0),
}


@settings(max_examples=400, deadline=None)
@hgiven(st.lists(st.sampled_from(sorted(COMMANDS)), max_size=20))
def test_any_command_sequence_conserves_money(names: list[str]) -> None:
    w = World()
    w.run(payout.decide_request, REQUEST, w.books(PAYABLE, CUR))
    for name in names:
        outcome = when(COMMANDS[name], w.state)
        if isinstance(outcome, DomainError):
            continue
        then_decision(outcome)
        for event in outcome.events:
            w.state = payout.evolve(w.state, event)
        w.books.post(outcome.groups)
        assert w.state is not None
        assert w.money() == EXPECTED_MONEY[w.state.status], (name, w.state)
        assert w.state.funds_returned == (w.state.status in (FAILED, CANCELLED))
