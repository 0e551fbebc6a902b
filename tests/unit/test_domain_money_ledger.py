"""Money (currency, amounts, display) and ledger groups (balanced per currency, or they refuse to exist)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from periodya.domain.errors import UnbalancedGroup, ValidationFailed
from periodya.domain.ledger import Entry, LedgerGroup, transfer
from periodya.domain.money import CURRENCIES, Money, check_amount, check_currency, exponent

# --- currency ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["USD", "EUR", "GBP", "JPY", "KWD", "CHF", "BHD", "KRW"])
def test_upper_case_iso_codes_are_accepted(code: str) -> None:
    assert check_currency(code) == code
    assert Money(1, code).currency == code


@pytest.mark.parametrize("code", ["usd", "Usd", "XXX", "US", "", "USDD", " USD", "EUR ", "XAU", "ZZZ"])
def test_other_currency_codes_are_refused(code: str) -> None:
    with pytest.raises(ValidationFailed, match="ISO 4217"):
        check_currency(code)
    with pytest.raises(ValidationFailed):
        Money(1, code)
    with pytest.raises(ValidationFailed):
        exponent(code)


def test_currency_list_holds_only_three_letter_upper_case_codes() -> None:
    assert all(len(c) == 3 and c.isalpha() and c.isupper() for c in CURRENCIES)
    assert "XXX" not in CURRENCIES


@pytest.mark.parametrize(("code", "exp"), [("JPY", 0), ("KRW", 0), ("CLP", 0), ("USD", 2), ("EUR", 2),
                                           ("GBP", 2), ("KWD", 3), ("BHD", 3), ("TND", 3)])
def test_exponent_follows_iso_4217(code: str, exp: int) -> None:
    assert exponent(code) == exp


@pytest.mark.parametrize(("amount", "code", "shown"), [
    (0, "USD", "0.00 USD"), (5, "USD", "0.05 USD"), (12345, "USD", "123.45 USD"), (100, "EUR", "1.00 EUR"),
    (500, "JPY", "500 JPY"), (0, "JPY", "0 JPY"), (1234, "KWD", "1.234 KWD"), (5, "KWD", "0.005 KWD"),
    (1_000_000, "KWD", "1000.000 KWD"),
])
def test_display_is_exponent_aware(amount: int, code: str, shown: str) -> None:
    assert Money(amount, code).display() == shown


def test_money_is_immutable() -> None:
    m = Money(100, "USD")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.amount = 5  # type: ignore[misc]


# --- amounts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [1, 100, 2**62 - 1])
def test_positive_integer_amounts_are_accepted(amount: int) -> None:
    assert check_amount(amount) == amount


@pytest.mark.parametrize("amount", [0, -1, -(2**62), True, False, 1.0, 1.5, "100", None, 2**62, 10**30])
def test_check_amount_refuses_zero_negative_bool_float_and_huge(amount: object) -> None:
    with pytest.raises(ValidationFailed):
        check_amount(amount)  # type: ignore[arg-type]


def test_zero_is_accepted_only_when_allowed() -> None:
    assert check_amount(0, allow_zero=True) == 0
    for bad in (-1, True, 0.0, 2**62):
        with pytest.raises(ValidationFailed):
            check_amount(bad, allow_zero=True)  # type: ignore[arg-type]


def test_check_amount_names_the_field() -> None:
    with pytest.raises(ValidationFailed, match="feeAmount"):
        check_amount(-5, field="feeAmount", allow_zero=True)


@pytest.mark.parametrize("amount", [-1, True, 1.0, 2**62])
def test_money_refuses_bad_amounts(amount: object) -> None:
    with pytest.raises(ValidationFailed):
        Money(amount, "USD")  # type: ignore[arg-type]


# --- ledger groups -----------------------------------------------------------------------------------


def test_entry_net_is_credit_minus_debit() -> None:
    assert Entry("a", "USD", debit=7).net == -7
    assert Entry("a", "USD", credit=7).net == 7


def test_balanced_group_is_accepted_and_lists_its_accounts() -> None:
    group = LedgerGroup("g1", "k", (Entry("b", "USD", debit=100), Entry("a", "USD", credit=60),
                                    Entry("c", "USD", credit=40), Entry("a", "USD", credit=1),
                                    Entry("c", "USD", debit=1)))
    assert group.accounts() == [("a", "USD"), ("b", "USD"), ("c", "USD")]


@pytest.mark.parametrize("entries", [(), (Entry("a", "USD", debit=100),), (Entry("a", "USD", credit=100),)])
def test_fewer_than_two_entries_are_refused(entries: tuple[Entry, ...]) -> None:
    with pytest.raises(UnbalancedGroup, match="g1: needs at least two entries"):
        LedgerGroup("g1", "k", entries)


def test_unbalanced_group_is_refused() -> None:
    with pytest.raises(UnbalancedGroup, match="g1"):
        LedgerGroup("g1", "k", (Entry("a", "USD", debit=100), Entry("b", "USD", credit=99)))


def test_entry_with_both_debit_and_credit_is_refused_even_if_the_group_balances() -> None:
    with pytest.raises(UnbalancedGroup, match="not both"):
        LedgerGroup("g1", "k", (Entry("a", "USD", debit=10, credit=10), Entry("b", "USD", debit=5),
                                Entry("c", "USD", credit=5)))


def test_zero_entries_are_refused() -> None:
    with pytest.raises(UnbalancedGroup):
        LedgerGroup("g1", "k", (Entry("a", "USD"), Entry("b", "USD")))
    with pytest.raises(UnbalancedGroup):
        LedgerGroup("g1", "k", (Entry("a", "USD", debit=5), Entry("b", "USD", credit=5), Entry("c", "USD")))


@pytest.mark.parametrize(("debit", "credit"), [(-5, -5), (True, True), (1.0, 1.0), (2**62, 2**62)])
def test_negative_bool_float_or_huge_entry_amounts_are_refused(debit: object, credit: object) -> None:
    with pytest.raises((UnbalancedGroup, ValidationFailed)):
        LedgerGroup("g1", "k", (Entry("a", "USD", debit=debit), Entry("b", "USD", credit=credit)))  # type: ignore[arg-type]


def test_entry_currency_must_be_valid() -> None:
    with pytest.raises(ValidationFailed):
        LedgerGroup("g1", "k", (Entry("a", "usd", debit=5), Entry("b", "usd", credit=5)))


def test_group_must_balance_per_currency_even_if_totals_match_across_currencies() -> None:
    with pytest.raises(UnbalancedGroup, match="USD"):
        LedgerGroup("g1", "k", (Entry("a", "USD", debit=100), Entry("b", "EUR", credit=100)))
    with pytest.raises(UnbalancedGroup):
        LedgerGroup("g1", "k", (Entry("a", "USD", debit=100), Entry("b", "USD", credit=60),
                                Entry("c", "EUR", debit=60), Entry("d", "EUR", credit=100)))


def test_multi_currency_group_balanced_per_currency_is_accepted() -> None:
    group = LedgerGroup("g1", "fx", (Entry("a", "USD", debit=100), Entry("b", "USD", credit=100),
                                     Entry("c", "JPY", debit=15000), Entry("d", "JPY", credit=15000)))
    assert len(group.entries) == 4


# --- transfer ----------------------------------------------------------------------------------------


def test_transfer_debits_the_source_and_credits_the_target() -> None:
    group = transfer("g1", "escrow_funded", "EUR", ("cash", "escrow:e1", 500))
    assert group == LedgerGroup("g1", "escrow_funded", (Entry("cash", "EUR", debit=500),
                                                         Entry("escrow:e1", "EUR", credit=500)))


def test_transfer_builds_one_balanced_group_from_several_moves() -> None:
    group = transfer("g1", "k", "USD", ("e", "p", 700), ("e", "r", 50))
    assert group.entries == (Entry("e", "USD", debit=700), Entry("p", "USD", credit=700),
                             Entry("e", "USD", debit=50), Entry("r", "USD", credit=50))


def test_transfer_skips_zero_moves() -> None:
    group = transfer("g1", "k", "USD", ("e", "p", 700), ("e", "r", 0))
    assert group.entries == (Entry("e", "USD", debit=700), Entry("p", "USD", credit=700))


def test_transfer_of_nothing_but_zero_moves_is_refused() -> None:
    with pytest.raises(UnbalancedGroup):
        transfer("g1", "k", "USD", ("e", "p", 0))


@pytest.mark.parametrize("amount", [-1, True, 2**62])
def test_transfer_refuses_bad_amounts(amount: int) -> None:
    with pytest.raises(ValidationFailed):
        transfer("g1", "k", "USD", ("e", "p", amount))


def test_transfer_refuses_bad_currency() -> None:
    with pytest.raises(ValidationFailed):
        transfer("g1", "k", "usd", ("e", "p", 5))


ACCOUNTS = st.sampled_from(["cash", "escrow:1", "payable:p", "inflight:p", "revenue"])


@settings(max_examples=200)
@given(st.lists(st.tuples(ACCOUNTS, ACCOUNTS, st.integers(0, 10**12)), min_size=1, max_size=6))
def test_transfer_nets_each_account_by_its_inflows_minus_outflows(moves: list[tuple[str, str, int]]) -> None:
    expected: dict[str, int] = defaultdict(int)
    for source, target, amount in moves:
        expected[source] -= amount
        expected[target] += amount
    if all(amount == 0 for _, _, amount in moves):
        with pytest.raises(UnbalancedGroup):
            transfer("g", "k", "USD", *moves)
        return
    group = transfer("g", "k", "USD", *moves)
    nets: dict[str, int] = defaultdict(int)
    for e in group.entries:
        nets[e.account] += e.net
    assert {a: n for a, n in nets.items() if n} == {a: n for a, n in expected.items() if n}
    assert sum(e.debit for e in group.entries) == sum(e.credit for e in group.entries) == sum(m[2] for m in moves)
