"""Money invariants, checked against the live tables and the log. Shared by several test modules."""

from __future__ import annotations

import asyncpg


async def assert_money_invariants(pool: asyncpg.Pool) -> None:
    """Every group balances; balances sum to zero per currency; no protected account is negative;
    each balance equals the sum of its ledger entries."""
    unbalanced = await pool.fetch(
        "SELECT group_id, currency, sum(debit) - sum(credit) AS diff FROM ledger_entries "
        "GROUP BY group_id, currency HAVING sum(debit) <> sum(credit)")
    assert unbalanced == [], unbalanced
    totals = await pool.fetch("SELECT currency, sum(balance) AS total FROM balances GROUP BY currency")
    assert all(r["total"] == 0 for r in totals), totals
    negative = await pool.fetch("SELECT * FROM balances WHERE protected AND balance < 0")
    assert negative == [], negative
    drift = await pool.fetch(
        "SELECT b.account, b.currency, b.balance, coalesce(e.net, 0) AS net FROM balances b LEFT JOIN "
        "(SELECT account, currency, sum(credit) - sum(debit) AS net FROM ledger_entries GROUP BY 1, 2) e "
        "USING (account, currency) WHERE b.balance <> coalesce(e.net, 0)")
    assert drift == [], drift
