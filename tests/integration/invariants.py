"""Money invariants, checked against the live tables and the log. Shared by several test modules.

The SQL is the application's own (periodya.projections.invariants), as the sentinel and the rebuild's
swap check run it."""

from __future__ import annotations

import asyncpg

from periodya.projections import invariants


async def assert_money_invariants(pool: asyncpg.Pool) -> None:
    """Every group balances; balances sum to zero per currency; no protected account is negative;
    each balance equals the sum of its ledger entries."""
    unbalanced = await pool.fetch(invariants.unbalanced_groups())
    assert unbalanced == [], unbalanced
    totals = await pool.fetch(invariants.currency_totals())
    assert all(r["total"] == 0 for r in totals), totals
    negative = await pool.fetch(invariants.negative_protected())
    assert negative == [], negative
    drift = await pool.fetch(invariants.balances_off_entries())
    assert drift == [], drift
