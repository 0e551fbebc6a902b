"""Ledger groups: one accounting transaction, a set of entries balanced per currency."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from periodya.domain.errors import UnbalancedGroup
from periodya.domain.money import check_amount, check_currency


@dataclass(frozen=True)
class Entry:
    account: str
    currency: str
    debit: int = 0
    credit: int = 0

    @property
    def net(self) -> int:
        """The entry's effect on the account's balance (credits minus debits)."""
        return self.credit - self.debit


@dataclass(frozen=True)
class LedgerGroup:
    """Debits equal credits per currency, or the group refuses to exist."""

    group_id: str
    kind: str
    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        if len(self.entries) < 2:
            raise UnbalancedGroup(f"group {self.group_id}: needs at least two entries")
        totals: dict[str, int] = defaultdict(int)
        for e in self.entries:
            check_currency(e.currency)
            if (e.debit == 0) == (e.credit == 0):
                raise UnbalancedGroup(f"group {self.group_id}: each entry is a debit or a credit, not both")
            check_amount(e.debit or e.credit)
            totals[e.currency] += e.debit - e.credit
        unbalanced = {c: t for c, t in totals.items() if t != 0}
        if unbalanced:
            raise UnbalancedGroup(f"group {self.group_id}: debits minus credits = {unbalanced}")

    def accounts(self) -> list[tuple[str, str]]:
        return sorted({(e.account, e.currency) for e in self.entries})


def transfer(group_id: str, kind: str, currency: str, *moves: tuple[str, str, int]) -> LedgerGroup:
    """Build a group from moves (from_account, to_account, amount): debit `from`, credit `to`."""
    entries: list[Entry] = []
    for source, target, amount in moves:
        if amount == 0:
            continue
        entries.append(Entry(source, currency, debit=amount))
        entries.append(Entry(target, currency, credit=amount))
    return LedgerGroup(group_id, kind, tuple(entries))
