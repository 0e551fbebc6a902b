"""settlement.settle, the provider-outcome rule, given/when/then for every (payout state, provider word)
pair: paid -> recorded and finalized, failed/canceled -> funds back (a compensating group after
finalize), anything else -> nothing; duplicates and late words change nothing; words that contradict
the record are refused; force (the operator's force-finalize) refuses anything but paid and finalizes a
quarantined payout too. The expected events and groups are written out, not computed by the code."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given as hgiven
from hypothesis import settings
from hypothesis import strategies as st

from periodya.domain import accounts, payout
from periodya.domain.errors import InvalidState
from periodya.domain.events import (
    Event,
    PayoutCancelled,
    PayoutFinalized,
    PayoutProviderFailed,
    PayoutProviderPaid,
    PayoutQuarantined,
    PayoutRequested,
    PayoutReversed,
    PayoutSendStarted,
    PayoutSent,
    Source,
)
from periodya.domain.ledger import LedgerGroup
from periodya.domain.payout import CANCELLED, FAILED, FINALIZED, PAID, QUARANTINED, PayoutState
from periodya.domain.settlement import NothingToDo, ProviderOutcome, Record, Refused, Settlement, settle
from tests.unit.domain_helpers import Books, assert_balanced, given_for, move

given = given_for(payout.evolve)

PO, PAYEE, CUR, AMOUNT, PPID = "po1", "payee1", "EUR", 600, "tr_1"
PAYABLE, INFLIGHT, CASH = accounts.payable(PAYEE), accounts.inflight(PAYEE), accounts.CASH


def gid(version: int, kind: str) -> str:
    return f"payout-{PO}@{version}:{kind}"


def finalized_at(version: int) -> LedgerGroup:
    return move(gid(version, "payout_finalized"), "payout_finalized", CUR, (INFLIGHT, CASH, AMOUNT))


def reversed_at(version: int) -> LedgerGroup:
    return move(gid(version, "payout_reversed"), "payout_reversed", CUR, (INFLIGHT, PAYABLE, AMOUNT))


def compensated_at(version: int) -> LedgerGroup:
    return move(gid(version, "payout_compensated"), "payout_compensated", CUR, (CASH, PAYABLE, AMOUNT))


# --- given: one history per state (the version each ends at in brackets) --------------------------------
REQ: tuple[Event, ...] = (PayoutRequested(payout_id=PO, payee_id=PAYEE, amount=AMOUNT, currency=CUR,
                                          destination="acct"),)                                      # [1]
SENDING = (*REQ, PayoutSendStarted(attempt=1))                                                      # [2]
SENT = (*SENDING, PayoutSent(provider_payout_id=PPID))                                              # [3]
PAID_ = (*SENT, PayoutProviderPaid(provider_payout_id=PPID, provider_event_id="evt_0", source="webhook"))  # [4]
FINALIZED_ = (*PAID_, PayoutFinalized(group_id=gid(5, "payout_finalized"), source="webhook"))       # [5]
FAILED_ = (*SENT, PayoutProviderFailed(provider_payout_id=PPID, source="webhook"),
           PayoutReversed(group_id=gid(5, "payout_reversed")))                                      # [5]
COMPENSATED = (*FINALIZED_, PayoutProviderFailed(provider_payout_id=PPID, source="webhook"),
               PayoutReversed(group_id=gid(7, "payout_compensated"), compensating=True))            # [7]
Q_UNSENT = (*SENDING, PayoutQuarantined(reason="stuck"))                                            # [3]
Q_SENT = (*SENT, PayoutQuarantined(reason="amount mismatch"))                                       # [4]
Q_PAID = (*Q_SENT, PayoutProviderPaid(provider_payout_id=PPID, source="reconcile"))                 # [5]
CANCELLED_ = (*Q_UNSENT, PayoutCancelled(reason="ops"), PayoutReversed(group_id=gid(5, "payout_reversed")))  # [5]

HISTORIES: dict[str, tuple[Event, ...]] = {
    "requested": REQ, "sending": SENDING, "sent": SENT, "paid": PAID_, "finalized": FINALIZED_, "failed": FAILED_,
    "compensated": COMPENSATED, "quarantined_unsent": Q_UNSENT, "quarantined_sent": Q_SENT,
    "quarantined_paid": Q_PAID, "cancelled": CANCELLED_,
}


def state_of(name: str) -> PayoutState:
    state = given(*HISTORIES[name])
    assert state is not None
    return state


# --- then: what settle must answer ---------------------------------------------------------------------
@dataclass(frozen=True)
class Records:
    events: tuple[Event, ...]
    groups: tuple[LedgerGroup, ...]
    status: str


@dataclass(frozen=True)
class Nothing:
    pass


@dataclass(frozen=True)
class Refuses:
    command: str
    why: str = ""


NOTHING = Nothing()


def sent_(source: Source = "webhook") -> PayoutSent:
    return PayoutSent(provider_payout_id=PPID, source=source)


def paid_(source: Source = "webhook") -> PayoutProviderPaid:
    return PayoutProviderPaid(provider_payout_id=PPID, provider_event_id="evt_9" if source == "webhook" else None,
                              source=source)


def finalize_(version: int, source: Source = "webhook") -> PayoutFinalized:
    return PayoutFinalized(group_id=gid(version, "payout_finalized"), source=source)


def failed_() -> PayoutProviderFailed:
    return PayoutProviderFailed(provider_payout_id=PPID, provider_event_id="evt_9", source="webhook")


def reverse_(version: int) -> PayoutReversed:
    return PayoutReversed(group_id=gid(version, "payout_reversed"))


# The webhook's word (source "webhook", provider event evt_9) on each state.
ON_PAID: dict[str, Records | Nothing | Refuses] = {
    "requested": Records((sent_(), paid_(), finalize_(4)), (finalized_at(4),), FINALIZED),  # our SENT record was lost
    "sending": Records((sent_(), paid_(), finalize_(5)), (finalized_at(5),), FINALIZED),
    "sent": Records((paid_(), finalize_(5)), (finalized_at(5),), FINALIZED),
    "paid": Records((finalize_(5),), (finalized_at(5),), FINALIZED),  # recorded paid earlier, not finalized yet
    "finalized": NOTHING,  # a duplicate, or paid after FINALIZED
    "failed": Refuses("record provider paid"),  # paid after failed: the funds went back, an incident
    "compensated": Refuses("record provider paid"),
    "quarantined_unsent": Records((sent_(), paid_()), (), QUARANTINED),  # the fact recorded, held, not finalized
    "quarantined_sent": Records((paid_(),), (), QUARANTINED),
    "quarantined_paid": NOTHING,
    "cancelled": Refuses("record provider paid"),
}
ON_FAILED: dict[str, Records | Nothing | Refuses] = {
    "requested": Refuses("record provider failed"),
    "sending": Records((failed_(), reverse_(4)), (reversed_at(4),), FAILED),
    "sent": Records((failed_(), reverse_(5)), (reversed_at(5),), FAILED),
    "paid": Records((failed_(), reverse_(6)), (reversed_at(6),), FAILED),  # failed after PAID, before finalize
    "finalized": Records((failed_(), PayoutReversed(group_id=gid(7, "payout_compensated"), compensating=True)),
                         (compensated_at(7),), FAILED),  # a paid that later failed: the compensating group
    "failed": NOTHING,  # a duplicate
    "compensated": NOTHING,
    "quarantined_unsent": Records((failed_(), reverse_(5)), (reversed_at(5),), FAILED),
    "quarantined_sent": Records((failed_(), reverse_(6)), (reversed_at(6),), FAILED),
    "quarantined_paid": Records((failed_(), reverse_(7)), (reversed_at(7),), FAILED),
    "cancelled": NOTHING,  # the funds are back already
}
# The operator's force-finalize (source "admin"), on a paid answer.
ON_FORCED_PAID: dict[str, Records | Nothing | Refuses] = {
    "requested": Records((sent_("admin"), paid_("admin"), finalize_(4, "admin")), (finalized_at(4),), FINALIZED),
    "sending": Records((sent_("admin"), paid_("admin"), finalize_(5, "admin")), (finalized_at(5),), FINALIZED),
    "sent": Records((paid_("admin"), finalize_(5, "admin")), (finalized_at(5),), FINALIZED),
    "paid": Records((finalize_(5, "admin"),), (finalized_at(5),), FINALIZED),
    "finalized": NOTHING,
    "failed": Refuses("record provider paid"),
    "compensated": Refuses("record provider paid"),
    "quarantined_unsent": Records((sent_("admin"), paid_("admin"), finalize_(6, "admin")), (finalized_at(6),),
                                  FINALIZED),
    "quarantined_sent": Records((paid_("admin"), finalize_(6, "admin")), (finalized_at(6),), FINALIZED),
    "quarantined_paid": Records((finalize_(6, "admin"),), (finalized_at(6),), FINALIZED),
    "cancelled": Refuses("record provider paid"),
}


def webhook(word: str, ppid: str = PPID) -> ProviderOutcome:
    return ProviderOutcome(word, ppid, "webhook", "evt_9")


def then(settled: Settlement, expected: Records | Nothing | Refuses, name: str) -> None:
    """`settled`, the answer on the state of history `name`, is what `expected` says."""
    state = state_of(name)
    if isinstance(expected, Records):
        assert isinstance(settled, Record), settled
        assert settled.decision.events == expected.events
        assert settled.decision.groups == expected.groups
        assert_balanced(settled.decision)
        assert settled.state == given(*HISTORIES[name], *expected.events)  # the state after, folded for the caller
        assert settled.state.status == expected.status
    elif isinstance(expected, Nothing):
        assert isinstance(settled, NothingToDo), settled
    else:
        assert isinstance(settled, Refused), settled
        assert isinstance(settled.error, InvalidState)
        assert (settled.error.subject, settled.error.state, settled.error.command) == (
            f"payout {PO}", state.status, expected.command)
        assert expected.why in str(settled.error)


def reserved_books() -> Books:
    """The books once the payout's amount is reserved: payable -> in-flight (the payee funded first)."""
    books = Books()
    books.post([move("seed", "seed", CUR, (CASH, PAYABLE, AMOUNT)),
                move(gid(1, "payout_reserved"), "payout_reserved", CUR, (PAYABLE, INFLIGHT, AMOUNT))])
    return books


RESERVED, PAID_OUT, RETURNED = (0, AMOUNT, -AMOUNT), (0, 0, 0), (AMOUNT, 0, -AMOUNT)  # (payable, in-flight, cash)


def test_every_table_covers_every_state() -> None:
    assert set(ON_PAID) == set(ON_FAILED) == set(ON_FORCED_PAID) == set(HISTORIES)


@pytest.mark.parametrize("name", list(HISTORIES))
def test_paid(name: str) -> None:
    then(settle(state_of(name), webhook("paid")), ON_PAID[name], name)


@pytest.mark.parametrize("word", ["failed", "canceled"])
@pytest.mark.parametrize("name", list(HISTORIES))
def test_failed_and_canceled(name: str, word: str) -> None:
    then(settle(state_of(name), webhook(word)), ON_FAILED[name], name)


@pytest.mark.parametrize("word", ["pending", "in_transit", "event payout.created"])
@pytest.mark.parametrize("name", list(HISTORIES))
def test_a_word_that_is_not_final_records_nothing(name: str, word: str) -> None:
    assert settle(state_of(name), webhook(word)) == NothingToDo(f"the provider says {word}")


@pytest.mark.parametrize("name", list(HISTORIES))
def test_force_finalize_on_a_paid_answer(name: str) -> None:
    then(settle(state_of(name), ProviderOutcome("paid", PPID, "admin"), force=True), ON_FORCED_PAID[name], name)


@pytest.mark.parametrize("word", ["failed", "canceled", "pending"])
@pytest.mark.parametrize("name", list(HISTORIES))
def test_force_finalize_refuses_anything_but_paid(name: str, word: str) -> None:
    then(settle(state_of(name), ProviderOutcome(word, PPID, "admin"), force=True),
         Refuses("force-finalize", f"the provider says {word}"), name)


@pytest.mark.parametrize("word", ["paid", "failed"])
@pytest.mark.parametrize("name", ["sent", "paid", "finalized", "quarantined_sent", "quarantined_paid"])
def test_a_word_about_another_provider_payout_is_refused(name: str, word: str) -> None:
    """Before any duplicate check: a second provider payout for one of ours is evidence, never news."""
    then(settle(state_of(name), webhook(word, "tr_other")),
         Refuses(f"record provider {word}", f"provider payout tr_other is not {PPID}"), name)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("word", ["paid", "failed", "canceled"])
@pytest.mark.parametrize("name", list(HISTORIES))
def test_the_same_word_twice_records_once(name: str, word: str, force: bool) -> None:
    """A duplicate outcome (a redelivered webhook, a reconcile after the webhook) records nothing more."""
    first = settle(state_of(name), webhook(word), force=force)
    if isinstance(first, Record):
        assert isinstance(settle(first.state, webhook(word), force=force), NothingToDo)


def test_failed_after_paid_after_finalized_is_compensated_once_and_a_late_paid_is_refused() -> None:
    """The out-of-order story: paid (finalized), then failed (compensating group), then the paid again."""
    books = reserved_books()
    state = state_of("sent")
    for word in ("paid", "failed"):
        settled = settle(state, webhook(word))
        assert isinstance(settled, Record)
        books.post(settled.decision.groups)
        state = settled.state
    assert (state.status, state.ledger_finalized, state.funds_returned) == (FAILED, True, True)
    assert (books(PAYABLE, CUR), books(INFLIGHT, CUR), books(CASH, CUR)) == RETURNED
    assert isinstance(settle(state, webhook("paid")), Refused)
    assert isinstance(settle(state, webhook("failed")), NothingToDo)


WORDS = st.sampled_from([("paid", False), ("failed", False), ("canceled", False), ("pending", False),
                         ("paid", True), ("failed", True)])


@settings(max_examples=300, deadline=None)
@hgiven(start=st.sampled_from(["sent", "quarantined_sent", "quarantined_unsent"]), words=st.lists(WORDS, max_size=8))
def test_any_sequence_of_words_moves_the_amount_at_most_once_each_way(start: str, words: list[tuple[str, bool]]
                                                                      ) -> None:
    """Money stays exact: whatever the provider says, in any order and repeated, the payout's amount is
    paid out at most once, and returned at most once; the books balance after every step."""
    books = reserved_books()
    state = state_of(start)
    for word, force in words:
        settled = settle(state, webhook(word), force=force)
        if isinstance(settled, Record):
            books.post(settled.decision.groups)
            state = settled.state
    money = (books(PAYABLE, CUR), books(INFLIGHT, CUR), books(CASH, CUR))
    if state.status in (FAILED, CANCELLED):
        assert money == RETURNED
    elif state.status == FINALIZED:
        assert money == PAID_OUT
    else:
        assert (state.status, money) in {(PAID, RESERVED), (QUARANTINED, RESERVED), ("SENT", RESERVED)}
