"""Given/when/then helpers for the pure domain tests, and a tiny independent double-entry book.

`given_for(evolve)(*events)` folds a history into a state; `when(decide, state, ...)` returns the decision or
the typed error it raised; the `then_*` helpers assert on either. `Books` applies ledger groups to
balances (credits minus debits, as in `periodya.domain.accounts`) without trusting `LedgerGroup`'s own
checks, so the tests can verify conservation of money independently of the code under test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from periodya.domain import accounts
from periodya.domain.decision import Decision
from periodya.domain.errors import DomainError, InvalidState
from periodya.domain.events import Event
from periodya.domain.ledger import Entry, LedgerGroup

S = TypeVar("S")
E = TypeVar("E", bound=DomainError)
Outcome = Decision | DomainError


def given_for(evolve: Callable[[S | None, Event], S | None]) -> Callable[..., S | None]:
    """`given(*events)` for one aggregate: the state after folding `events` from nothing."""

    def given(*events: Event) -> S | None:
        state: S | None = None
        for event in events:
            state = evolve(state, event)
        return state

    return given


def when(decide: Callable[..., Decision], *args: Any, **kwargs: Any) -> Outcome:
    """Run one decision; a typed domain error is returned, anything else propagates and fails the test."""
    try:
        return decide(*args, **kwargs)
    except DomainError as err:
        return err


def then_decision(outcome: Outcome) -> Decision:
    assert isinstance(outcome, Decision), f"expected a decision, got {type(outcome).__name__}: {outcome}"
    assert_balanced(outcome)
    return outcome


def then_events(outcome: Outcome, *events: Event, groups: Iterable[LedgerGroup] = ()) -> Decision:
    decision = then_decision(outcome)
    assert decision.events == tuple(events)
    assert decision.groups == tuple(groups)
    return decision


def then_noop(outcome: Outcome) -> None:
    decision = then_decision(outcome)
    assert decision.is_noop, f"expected a no-op, got {decision}"


def then_error(outcome: Outcome, kind: type[E]) -> E:
    assert isinstance(outcome, kind), f"expected {kind.__name__}, got {outcome!r}"
    return outcome


def then_invalid_state(outcome: Outcome, state: str, command: str) -> InvalidState:
    err = then_error(outcome, InvalidState)
    assert (err.state, err.command) == (state, command)
    message = str(err)
    assert state in message and command in message, message
    return err


def move(group_id: str, kind: str, currency: str, *moves: tuple[str, str, int]) -> LedgerGroup:
    """The group we expect: for each (from, to, amount), a debit on `from` then a credit on `to`."""
    entries: list[Entry] = []
    for source, target, amount in moves:
        entries += [Entry(source, currency, debit=amount), Entry(target, currency, credit=amount)]
    return LedgerGroup(group_id, kind, tuple(entries))


def assert_balanced(decision: Decision) -> None:
    """Every group: each entry one-sided and positive, debits equal credits in every currency."""
    for group in decision.groups:
        totals: dict[str, int] = defaultdict(int)
        for e in group.entries:
            assert (e.debit > 0) != (e.credit > 0) and min(e.debit, e.credit) == 0, e
            totals[e.currency] += e.debit - e.credit
        assert all(t == 0 for t in totals.values()), (group.group_id, dict(totals))


class Books:
    """Balances per (account, currency) as credits minus debits; refuses overdrafts of protected accounts."""

    def __init__(self) -> None:
        self.balances: dict[tuple[str, str], int] = defaultdict(int)
        self.group_ids: list[str] = []

    def post(self, groups: Iterable[LedgerGroup]) -> None:
        for group in groups:
            assert group.group_id not in self.group_ids, f"group {group.group_id} posted twice"
            self.group_ids.append(group.group_id)
            for e in group.entries:
                self.balances[(e.account, e.currency)] += e.credit - e.debit
        self.check()

    def check(self) -> None:
        per_currency: dict[str, int] = defaultdict(int)
        for (account, currency), balance in self.balances.items():
            per_currency[currency] += balance
            if accounts.is_protected(account):
                assert balance >= 0, f"overdraft on {account}: {balance} {currency}"
        assert all(t == 0 for t in per_currency.values()), dict(per_currency)

    def __call__(self, account: str, currency: str) -> int:
        return self.balances.get((account, currency), 0)
