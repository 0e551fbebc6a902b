"""settlement.adopt: the provider payout found by our idempotency key for a payout that names none (the
create's answer was lost) is recorded sent first, then its word is settled; a payout that names one
already is exactly settle. The expected events and groups are written out, not computed by the code."""

from __future__ import annotations

import pytest

from periodya.domain.errors import InvalidState
from periodya.domain.events import PayoutFinalized, PayoutProviderFailed, PayoutProviderPaid, PayoutSent, Source
from periodya.domain.payout import FAILED, FINALIZED, QUARANTINED, SENT
from periodya.domain.settlement import ProviderOutcome, Record, Refused, Settlement, adopt, settle
from tests.unit.domain_helpers import assert_balanced
from tests.unit.test_domain_settlement import (
    AMOUNT,
    CUR,
    HISTORIES,
    PPID,
    finalized_at,
    gid,
    given,
    reverse_,
    reversed_at,
    state_of,
)


def found(word: str, source: Source = "reconcile", amount: int = AMOUNT, currency: str = CUR) -> ProviderOutcome:
    return ProviderOutcome(word, PPID, source, amount=amount, currency=currency)


def recorded(settled: Settlement, name: str, events: tuple[object, ...], groups: tuple[object, ...],
             status: str) -> None:
    assert isinstance(settled, Record), settled
    assert settled.decision.events == events
    assert settled.decision.groups == groups
    assert_balanced(settled.decision)
    assert settled.state == given(*HISTORIES[name], *settled.decision.events)
    assert settled.state.status == status


def refused(settled: Settlement, name: str, command: str, why: str) -> None:
    assert isinstance(settled, Refused), settled
    assert isinstance(settled.error, InvalidState)
    assert (settled.error.state, settled.error.command) == (state_of(name).status, command)
    assert why in str(settled.error)


@pytest.mark.parametrize("word", ["paid", "failed", "pending"])
@pytest.mark.parametrize("name", ["sent", "paid", "finalized", "failed", "compensated", "quarantined_sent",
                                  "quarantined_paid"])
def test_a_payout_that_names_its_provider_payout_is_settled_as_settle_does(name: str, word: str) -> None:
    adopted, settled = adopt(state_of(name), found(word)), settle(state_of(name), found(word))
    if isinstance(settled, Refused):  # exceptions do not compare equal: compare what they say
        assert isinstance(adopted, Refused) and str(adopted.error) == str(settled.error), adopted
    else:
        assert adopted == settled


def sent() -> PayoutSent:
    return PayoutSent(provider_payout_id=PPID, source="reconcile")


@pytest.mark.parametrize(("name", "status"), [("requested", SENT), ("sending", SENT),
                                              ("quarantined_unsent", QUARANTINED)])
def test_a_word_that_is_not_final_still_records_the_provider_payout(name: str, status: str) -> None:
    recorded(adopt(state_of(name), found("pending")), name, (sent(),), (), status)


def test_paid_on_a_quarantined_payout_is_recorded_and_held() -> None:
    recorded(adopt(state_of("quarantined_unsent"), found("paid")), "quarantined_unsent",
             (sent(), PayoutProviderPaid(provider_payout_id=PPID, source="reconcile")), (), QUARANTINED)


def test_force_finalizes_a_quarantined_payout_the_provider_paid() -> None:
    events = (PayoutSent(provider_payout_id=PPID, source="admin"),
              PayoutProviderPaid(provider_payout_id=PPID, source="admin"),
              PayoutFinalized(group_id=gid(6, "payout_finalized"), source="admin"))
    recorded(adopt(state_of("quarantined_unsent"), found("paid", "admin"), force=True), "quarantined_unsent",
             events, (finalized_at(6),), FINALIZED)


def test_failed_on_a_quarantined_payout_returns_the_funds() -> None:
    events = (sent(), PayoutProviderFailed(provider_payout_id=PPID, source="reconcile"), reverse_(6))
    recorded(adopt(state_of("quarantined_unsent"), found("failed")), "quarantined_unsent", events,
             (reversed_at(6),), FAILED)


@pytest.mark.parametrize("word", ["pending", "failed", "canceled"])
def test_force_refuses_anything_but_paid_and_records_nothing(word: str) -> None:
    refused(adopt(state_of("quarantined_unsent"), found(word, "admin"), force=True), "quarantined_unsent",
            "force-finalize", f"the provider says {word}")


@pytest.mark.parametrize(("amount", "currency"), [(AMOUNT + 1, CUR), (AMOUNT, "USD"), (None, None)])
@pytest.mark.parametrize("force", [False, True])
def test_a_provider_payout_for_another_amount_or_currency_is_not_ours(amount: int | None, currency: str | None,
                                                                     force: bool) -> None:
    outcome = ProviderOutcome("paid", PPID, "admin", amount=amount, currency=currency)
    refused(adopt(state_of("quarantined_unsent"), outcome, force=force), "quarantined_unsent", "record sent",
            f"provider payout {PPID} is for {amount} {currency}")


def test_a_cancelled_payout_the_provider_holds_is_refused() -> None:
    """Cancelled means the provider said it held none: a payout found now is an incident, not a record."""
    refused(adopt(state_of("cancelled"), found("paid")), "cancelled", "record sent", f"the provider holds {PPID}")
