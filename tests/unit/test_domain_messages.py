"""The domain's refusals say exactly why (their text is the problem body's `detail` a client or operator
reads), and the folds' less visible fields: what a send clears, what a requeue resets, the step lookup
for event subclasses. Found by mutation testing (python -m bench mutants domain)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from periodya.domain import escrow, ledger, money, payout
from periodya.domain import folding as records
from periodya.domain.errors import DomainError
from periodya.domain.escrow import FundEscrow, RefundEscrow, ReleaseEscrow
from periodya.domain.events import (
    EscrowFunded,
    PayoutProviderFailed,
    PayoutProviderPaid,
    PayoutQuarantined,
    PayoutRequested,
    PayoutRequeued,
    PayoutSendFailed,
    PayoutSendStarted,
    PayoutSent,
)
from tests.unit import test_domain_escrow as te
from tests.unit.test_domain_payout import REQUEST, state_in

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def refusal(f: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(DomainError) as caught:
        f(*args, **kwargs)
    return f"{type(caught.value).__name__}: {caught.value}"


def test_payout_refusals_say_why() -> None:
    assert refusal(payout.decide_request, state_in("REQUESTED"), REQUEST, 10**9) == (
        "InvalidState: payout po1 is REQUESTED: request is not allowed (payout id already used)")
    assert refusal(payout.decide_request, None, payout.RequestPayout("p", "", 1, "USD", "d"), 10**9) == (
        "ValidationFailed: payeeId and destination must not be empty")
    assert refusal(payout.decide_request, None, payout.RequestPayout("p", "x", 7, "USD", "d"), 5) == (
        "InsufficientFunds: payable:x has 5 USD available, 7 requested")
    for decide in (payout.decide_quarantine, lambda s, r: payout.decide_cancel(s, r, provider_has_none=True)):
        assert refusal(decide, state_in("QUARANTINED"), " ") == "ValidationFailed: reason must not be empty"
    assert refusal(payout.decide_cancel, state_in("SENT"), "x", provider_has_none=True) == (
        "InvalidState: payout po1 is SENT: cancel is not allowed (only a quarantined payout can be cancelled)")
    sent_then_held = payout.evolve(state_in("SENT"), PayoutQuarantined(reason="hold"))
    assert refusal(payout.decide_cancel, sent_then_held, "x", provider_has_none=True) == (
        "InvalidState: payout po1 is QUARANTINED: cancel is not allowed (the payout was handed to the provider)")
    assert refusal(payout.decide_finalize, state_in("SENT"), "webhook") == (
        "InvalidState: payout po1 is SENT: finalize is not allowed (the provider has not reported it paid)")
    assert refusal(payout.decide_provider_failed, state_in("SENT"), "po_other", "webhook") == (
        "InvalidState: payout po1 is SENT: record provider failed is not allowed "
        "(provider payout po_other is not tr_1)")
    assert refusal(payout.decide_finalize, state_in("FAILED"), "webhook").endswith(
        "finalize is not allowed (the provider has not reported it paid)")


def test_escrow_refusals_say_why() -> None:
    funded = te.given(te.FUNDED)
    assert refusal(escrow.decide_fund, funded, FundEscrow(te.E, 5, "USD")) == (
        "InvalidState: escrow e1 is funded: fund is not allowed (an escrow is funded once)")
    assert refusal(escrow.decide_release, None, ReleaseEscrow("e9", "p", 5, 0)) == (
        "InvalidState: escrow e9 is absent: release is not allowed")
    assert refusal(escrow.decide_release, funded, ReleaseEscrow(te.E, "p", 5, -1)) == (
        "ValidationFailed: feeAmount must be >= 0, got -1")
    assert refusal(escrow.decide_release, funded, ReleaseEscrow(te.E, "", 5, 0)) == (
        "ValidationFailed: payeeId must not be empty")
    assert refusal(escrow.decide_refund, None, RefundEscrow("e9", 5)) == (
        "InvalidState: escrow e9 is absent: refund is not allowed")
    assert refusal(escrow.decide_refund, funded, RefundEscrow(te.E, 5000)) == (
        "InsufficientFunds: escrow:e1 has 1000 EUR available, 5000 requested")


def test_money_refusals_say_why() -> None:
    for bad in (True, 1.5, "1"):
        assert refusal(money.check_amount, bad) == "ValidationFailed: amount must be an integer number of minor units"
    assert refusal(money.check_amount, 0) == "ValidationFailed: amount must be > 0, got 0"
    assert refusal(money.check_amount, -1, allow_zero=True) == "ValidationFailed: amount must be >= 0, got -1"
    assert refusal(money.check_amount, 2**62, field="feeAmount") == "ValidationFailed: feeAmount is too large"
    assert money.check_amount(2**62 - 1) == 2**62 - 1 and money.check_amount(0, allow_zero=True) == 0
    assert refusal(ledger.LedgerGroup, "g", "k", (ledger.Entry("a", "USD", 5, 0), ledger.Entry("b", "USD", 0, 3))) == (
        "UnbalancedGroup: group g: debits minus credits = {'USD': 2}")


def test_a_send_clears_the_last_error_and_a_requeue_the_backoff() -> None:
    failed = payout.evolve(state_in("SENDING"), PayoutSendFailed(attempt=1, error="boom", next_attempt_at=NOW))
    assert failed is not None and (failed.last_error, failed.next_attempt_at) == ("boom", NOW)
    requeued = payout.evolve(failed, PayoutRequeued(reason="operator"))
    assert requeued is not None and (requeued.status, requeued.next_attempt_at, requeued.last_error) == (
        "REQUESTED", None, "operator")
    resent = payout.evolve(payout.evolve(requeued, PayoutSendStarted(attempt=2)),
                           PayoutSent(provider_payout_id="tr_9"))
    assert resent is not None and (resent.status, resent.last_error, resent.provider_payout_id) == (
        "SENT", None, "tr_9")


def test_provider_answers_record_the_provider_payout() -> None:
    """A paid or failed answer for a payout whose send was never recorded names the provider payout."""
    paid = payout.evolve(state_in("SENDING"), PayoutProviderPaid(provider_payout_id="tr_7", source="webhook"))
    assert paid is not None and (paid.provider_payout_id, paid.provider_status) == ("tr_7", "paid")
    failed = payout.evolve(state_in("SENDING"), PayoutProviderFailed(provider_payout_id="tr_8", source="webhook"))
    assert failed is not None and failed.provider_payout_id == "tr_8"
    kept = payout.evolve(state_in("SENT"), PayoutProviderFailed(provider_payout_id=None, source="reconcile"))
    assert kept is not None and kept.provider_payout_id == "tr_1"  # an answer without the id keeps ours


def test_a_second_failure_answer_for_a_quarantined_payout_reverses_once() -> None:
    held = payout.evolve(state_in("SENT"), PayoutQuarantined(reason="hold"))
    first = payout.decide_provider_failed(held, "tr_1", "webhook")
    assert first.groups  # the funds go back once
    after = held
    for event in first.events:
        after = payout.evolve(after, event)
    assert after is not None and after.provider_status == "failed"
    assert payout.decide_provider_failed(after, "tr_1", "reconcile").is_noop


def test_an_abandoned_send_keeps_500_characters_of_the_error() -> None:
    decision = payout.decide_abandon(state_in("SENDING"), "e" * 501)
    assert decision.events[0].error == "e" * 500  # type: ignore[attr-defined]


class LateRequested(PayoutRequested):
    """An event subclass (a later schema version) folds like its base class."""


def test_step_for_resolves_subclasses_through_their_bases_and_remembers() -> None:
    def requested_step(s: Any, e: Any) -> str:
        return "requested"

    def default(s: Any, e: Any) -> str:
        return "default"

    def own(s: Any, e: Any) -> str:
        return "own"

    steps: dict[Any, Any] = {PayoutRequested: requested_step}
    assert records.step_for(steps, LateRequested, default) is requested_step
    assert steps[LateRequested] is requested_step  # remembered
    assert records.step_for(steps, PayoutSent, default) is default
    assert steps[PayoutSent] is default
    assert records.step_for({PayoutSent: own, PayoutRequested: requested_step}, PayoutSent, default) is own
    state = payout.evolve(None, LateRequested(payout_id="po9", payee_id="p", amount=5, currency="USD",
                                              destination="d"))
    assert state is not None and (state.payout_id, state.status, state.version) == ("po9", "REQUESTED", 1)


def test_folds_ignore_events_of_other_streams() -> None:
    funded = te.given(te.FUNDED)
    assert escrow.evolve(funded, PayoutSent(provider_payout_id="tr_1")) == funded
    with pytest.raises(AssertionError, match=r"^escrow events before EscrowFunded$"):
        escrow.evolve(None, PayoutSent(provider_payout_id="tr_1"))
    with pytest.raises(AssertionError, match=r"^payout events before PayoutRequested$"):
        payout.evolve(None, PayoutSent(provider_payout_id="tr_1"))


def test_fold_is_evolve_over_the_history() -> None:
    events = [PayoutRequested(payout_id="po9", payee_id="p", amount=5, currency="USD", destination="d"),
              PayoutSendStarted(attempt=1), PayoutSent(provider_payout_id="tr_9")]
    state = payout.fold(events)
    assert state is not None and (state.status, state.version, state.provider_payout_id) == ("SENT", 3, "tr_9")
    assert payout.fold([]) is None


def test_a_payout_counts_an_unknown_event_of_its_stream_without_changing() -> None:
    sent = state_in("SENT")
    other = payout.evolve(sent, EscrowFunded(escrow_id="e1", amount=5, currency="USD"))
    assert other is not None and other == replace(sent, version=sent.version + 1)


def test_a_refusal_without_a_reason_adds_none() -> None:
    assert refusal(payout.decide_requeue, state_in("SENT"), "x") == (
        "InvalidState: payout po1 is SENT: requeue is not allowed")
