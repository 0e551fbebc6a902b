"""Ledger accounts. An account's balance is kept per currency as credits minus debits.

With that sign, the liabilities (escrow, payee payable, payee payout-in-flight, fee revenue) are
positive while they hold money, and the asset `cash` is negative: its balance is minus the cash the
platform holds at the provider. Every group is balanced, so the balances of all accounts in one
currency always sum to zero.
"""

from __future__ import annotations

CASH = "cash:platform"
REVENUE = "revenue:platform"

# Accounts that may never go below zero (no overdraft), enforced inline under row locks.
PROTECTED_PREFIXES = ("escrow:", "payable:", "inflight:")


def escrow(escrow_id: str) -> str:
    return f"escrow:{escrow_id}"


def payable(payee_id: str) -> str:
    return f"payable:{payee_id}"


def inflight(payee_id: str) -> str:
    return f"inflight:{payee_id}"


def is_protected(account: str) -> bool:
    return account.startswith(PROTECTED_PREFIXES)


def lock_name(account: str, currency: str) -> str:
    """The advisory-lock resource of one account balance."""
    return f"account:{account}:{currency}"
