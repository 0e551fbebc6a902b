"""The money invariants of the ledger views, as SQL, in one place.

Money is never lost or created: every ledger group balances per currency (debits = credits), so the
balances of each currency sum to zero; each balance equals the net (credits - debits) of its ledger
entries; no protected account is negative. (The last one, and balance = credits - debits, are also
CHECK constraints of `balances`, enforced on every write.)

One query per invariant, used by the sentinel's checks (runners.sentinel_checks: the live tables), by
the rebuild's check before a swap (audit.replay.invariant_problems: a scratch schema) and by the tests
(tests/integration/invariants.py). Each builder takes the schema to read (None: unqualified names, i.e.
the connection's search_path) and an optional extra condition; it returns SQL text only (no I/O).
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg


def _in(schema: str | None, table: str) -> str:
    return f"{schema}.{table}" if schema else table


def group_sums(schema: str | None = None, where: str = "") -> str:
    """Per ledger group and currency: debits, credits and entry count (`where` filters the entries)."""
    return (f"SELECT group_id, currency, sum(debit)::bigint AS debits, sum(credit)::bigint AS credits, "
            f"count(*) AS n FROM {_in(schema, 'ledger_entries')} {where} GROUP BY group_id, currency")


def unbalanced_groups(schema: str | None = None, where: str = "") -> str:
    """The (group, currency) pairs whose debits differ from their credits: should be none."""
    return group_sums(schema, where) + " HAVING sum(debit) <> sum(credit)"


def currency_totals(schema: str | None = None) -> str:
    """Per currency: the sum of every balance (`total`) and the number of balances (`n`)."""
    return (f"SELECT currency, sum(balance)::bigint AS total, count(*) AS n FROM {_in(schema, 'balances')} "
            "GROUP BY currency")


def unbalanced_currencies(schema: str | None = None) -> str:
    """The currencies whose balances do not sum to zero: should be none."""
    return currency_totals(schema) + " HAVING sum(balance) <> 0"


def entries_net(schema: str | None = None, where: str = "") -> str:
    """Per account and currency: the net (credits - debits) of its ledger entries (`where` filters them)."""
    return (f"SELECT account, currency, (sum(credit) - sum(debit))::bigint AS net "
            f"FROM {_in(schema, 'ledger_entries')} {where} GROUP BY 1, 2")


def balances_off_entries(schema: str | None = None) -> str:
    """The balances that differ from the net of their ledger entries: should be none."""
    return (f"SELECT b.account, b.currency, b.balance, coalesce(e.net, 0) AS net FROM {_in(schema, 'balances')} b "
            f"LEFT JOIN ({entries_net(schema)}) e USING (account, currency) WHERE b.balance <> coalesce(e.net, 0)")


def negative_protected(schema: str | None = None) -> str:
    """The protected accounts with a negative balance: should be none."""
    return f"SELECT * FROM {_in(schema, 'balances')} WHERE protected AND balance < 0"


async def problems(conn: asyncpg.Connection, schema: str | None, tables: Iterable[str], limit: int = 10) -> list[str]:
    """Each violated invariant among those the given tables hold, as one line per offending row (at most
    `limit` rows per invariant). An empty list means the money in these tables is whole."""
    present = set(tables)
    found: list[str] = []
    if "ledger_entries" in present:
        rows = await conn.fetch(f"{unbalanced_groups(schema)} LIMIT {int(limit)}")
        found += [f"ledger group {r['group_id']} does not balance in {r['currency']}" for r in rows]
    if "balances" in present:
        rows = await conn.fetch(f"{unbalanced_currencies(schema)} LIMIT {int(limit)}")
        found += [f"balances in {r['currency']} sum to {r['total']}, not 0" for r in rows]
        rows = await conn.fetch(f"{negative_protected(schema)} LIMIT {int(limit)}")
        found += [f"protected account {r['account']} is negative in {r['currency']}" for r in rows]
    if {"balances", "ledger_entries"} <= present:
        rows = await conn.fetch(f"{balances_off_entries(schema)} LIMIT {int(limit)}")
        found += [f"balance of {r['account']} {r['currency']} differs from its entries" for r in rows]
    return found
