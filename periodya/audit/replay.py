"""What `periodya replay` does around the rebuild engine (audit.engine): one REPEATABLE READ snapshot in
which the log is rebuilt into a scratch schema, the rows counted and every table diffed against live
(audit.diff), and the money invariants checked before a `--swap` (projections.invariants).

The rebuild's snapshot is returned as well: `--swap` needs it to catch up with the events that
committed after it (audit.swap). A unique scratch schema per run (audit.scratch) keeps two runs apart.

Note: the rebuild's transaction writes (the scratch schema), so it holds an xid for its whole run, and
the snapshot horizon of commit-order readers (the sentinel's recent mode) stays behind it until it
ends. Such readers pause and resume where they were; writers are never blocked by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from periodya.audit import scratch as scratch_schema
from periodya.audit.diff import TableDiff, columns_of, count_rows, diff_table
from periodya.audit.engine import rebuild_into, tables_of
from periodya.eventstore.model import Position
from periodya.projections import invariants

__all__ = ["Rebuilt", "invariant_problems", "open_repeatable_read", "rebuild", "replay_and_diff", "tables_of"]


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


async def rebuild(conn: asyncpg.Connection, names: Sequence[str] | None, *, position: Position | None = None,
                  diff: bool = True, limit: int = 10, scratch: str | None = None,
                  reader: asyncpg.Connection | None = None, keep_indexes: bool = True) -> Rebuilt:
    """Inside the caller's REPEATABLE READ transaction (opened but with no statement run yet): take the
    snapshot, rebuild (audit.engine; with a second, idle connection `reader`, the log is read on it a page
    ahead), count rows and (unless `diff` is false) diff every table against live."""
    snapshot = str(await conn.fetchval("SELECT pg_current_snapshot()::text"))  # fixes the snapshot
    await conn.execute("SET LOCAL statement_timeout = 0")  # a big log takes longer than the pool's 30 s
    out = Rebuilt(scratch or scratch_schema.new_name(), 0, snapshot)
    out.events = await rebuild_into(conn, out.scratch, names, position, reader=reader, keep_indexes=keep_indexes)
    for table in tables_of(names):
        live = await count_rows(conn, "periodya", table) if diff else None
        out.counts[table] = (live, await count_rows(conn, out.scratch, table))
        if diff:
            out.diffs.append(await diff_table(conn, out.scratch, table, limit))
            out.columns[table] = await columns_of(conn, table)
    return out


async def replay_and_diff(pool: asyncpg.Pool, scratch: str = "replay_scratch",
                          names: Sequence[str] | None = None) -> list[TableDiff]:
    """Rebuild `names` (default all) from the whole log and diff every table against live, in one snapshot
    on one connection; nothing of the scratch schema survives."""
    async with pool.acquire() as conn:
        tx = await open_repeatable_read(conn)
        try:
            return (await rebuild(conn, names, scratch=scratch, limit=20, keep_indexes=False)).diffs
        finally:
            await tx.rollback()


async def open_repeatable_read(conn: asyncpg.Connection) -> Any:
    tx = conn.transaction(isolation="repeatable_read")
    await tx.start()
    return tx


async def invariant_problems(conn: asyncpg.Connection, schema: str, names: Sequence[str] | None) -> list[str]:
    """The money invariants (projections.invariants), checked on rebuilt tables before they may replace
    the live ones."""
    return await invariants.problems(conn, scratch_schema.checked(schema), tables_of(names))
