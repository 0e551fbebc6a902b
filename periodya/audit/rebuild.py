"""Rebuild projections from the log into a scratch schema: to diff against live, up to a point, or to swap in.

The heavy lifting is projections.replay (rebuild_in, diff_table: the same apply functions as the live
path). This module adds what the audit commands need around it: a unique scratch schema per run (so two
runs never collide), a cut at any position, row counts, and the rebuild's snapshot, which `--swap`
needs in order to catch up with the events that committed after it.

Note: the rebuild's transaction writes (the scratch schema), so it holds an xid for its whole run, and
the snapshot horizon of commit-order readers (followers, the sentinel's recent mode) stays behind it
until it ends. Followers pause and resume where they were; writers are never blocked by it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from periodya.audit.rebuilder import rebuild_into
from periodya.eventstore.model import START, Position
from periodya.projections.replay import TableDiff, Until, diff_table, rebuild_in, selected

NOTHING = Until(at=datetime(1, 1, 1, tzinfo=UTC))  # the empty prefix: no event is recorded that early


def scratch_name(prefix: str = "replay") -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def tables_of(names: Sequence[str] | None) -> list[str]:
    """Every table of the selected projections, in the registry's (= inline apply) order."""
    return [t for module in selected(names).values() for t in module.TABLES]


@dataclass
class Rebuilt:
    scratch: str
    events: int
    snapshot: str  # pg_snapshot text of the rebuild's REPEATABLE READ transaction
    counts: dict[str, tuple[int | None, int]] = field(default_factory=dict)  # table -> (live rows, rebuilt rows)
    diffs: list[TableDiff] = field(default_factory=list)
    columns: dict[str, list[str]] = field(default_factory=dict)  # table -> its columns, in table order

    @property
    def clean(self) -> bool:
        return all(d.clean for d in self.diffs)


async def rebuild_until(conn: asyncpg.Connection, scratch: str, names: Sequence[str] | None,
                        position: Position | None) -> int:
    """rebuild_in up to and including `position` in (tx, seq) order; None = the whole log."""
    if position is None:
        return await rebuild_in(conn, scratch, names)
    until = NOTHING if position == START else Until(seq=position.seq)
    return await rebuild_in(conn, scratch, names, until)


async def count_rows(conn: asyncpg.Connection, schema: str, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {schema}.{table}"))


async def rebuild(conn: asyncpg.Connection, names: Sequence[str] | None, *, position: Position | None = None,
                  diff: bool = True, limit: int = 10, scratch: str | None = None,
                  reader: asyncpg.Connection | None = None, keep_indexes: bool = True) -> Rebuilt:
    """Inside the caller's REPEATABLE READ transaction (opened but with no statement run yet): take the
    snapshot, rebuild, count rows and (unless `diff` is false) diff every table against live. With a
    second, idle connection `reader`, the log is read on it, a page ahead (audit.rebuilder)."""
    snapshot = str(await conn.fetchval("SELECT pg_current_snapshot()::text"))  # fixes the snapshot
    await conn.execute("SET LOCAL statement_timeout = 0")  # a big log takes longer than the pool's 30 s
    out = Rebuilt(scratch or scratch_name(), 0, snapshot)
    if reader is None:
        out.events = await rebuild_until(conn, out.scratch, names, position)
    else:
        out.events = await rebuild_into(conn, reader, out.scratch, names, position, keep_indexes=keep_indexes)
    for table in tables_of(names):
        live = await count_rows(conn, "periodya", table) if diff else None
        out.counts[table] = (live, await count_rows(conn, out.scratch, table))
        if diff:
            out.diffs.append(await diff_table(conn, out.scratch, table, limit))
            out.columns[table] = await columns_of(conn, table)
    return out


async def columns_of(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch("SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
                            "AND NOT attisdropped ORDER BY attnum", f"periodya.{table}")
    return [r["attname"] for r in rows]


async def open_repeatable_read(conn: asyncpg.Connection) -> Any:
    tx = conn.transaction(isolation="repeatable_read")
    await tx.start()
    return tx


async def invariant_problems(conn: asyncpg.Connection, schema: str, names: Sequence[str] | None) -> list[str]:
    """The money invariants, checked on rebuilt tables before they may replace the live ones: every
    group balances per currency, balances sum to zero per currency, and each balance equals its entries.
    (no_overdraft and balance = credits - debits are CHECK constraints, enforced while rebuilding.)"""
    tables = set(tables_of(names))
    problems: list[str] = []
    if "ledger_entries" in tables:
        rows = await conn.fetch(f"SELECT group_id, currency FROM {schema}.ledger_entries GROUP BY 1, 2 "
                                "HAVING sum(debit) <> sum(credit) LIMIT 10")
        problems += [f"ledger group {r['group_id']} does not balance in {r['currency']}" for r in rows]
    if "balances" in tables:
        rows = await conn.fetch(f"SELECT currency, sum(balance) AS total FROM {schema}.balances GROUP BY 1 "
                                "HAVING sum(balance) <> 0")
        problems += [f"balances in {r['currency']} sum to {r['total']}, not 0" for r in rows]
    if {"balances", "ledger_entries"} <= tables:
        rows = await conn.fetch(
            f"SELECT b.account, b.currency FROM {schema}.balances b LEFT JOIN (SELECT account, currency, "
            f"sum(credit) - sum(debit) AS net FROM {schema}.ledger_entries GROUP BY 1, 2) e USING (account, currency) "
            "WHERE b.balance <> coalesce(e.net, 0) LIMIT 10")
        problems += [f"balance of {r['account']} {r['currency']} differs from its entries" for r in rows]
    return problems
