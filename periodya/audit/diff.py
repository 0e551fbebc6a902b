"""Diff rebuilt projection tables against the live ones, row by row, inside the caller's snapshot.

Run in the rebuild's own REPEATABLE READ transaction (audit.replay), so writers that commit meanwhile
cannot produce false differences: the snapshot holds exactly the events whose effects the live tables
show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from periodya.audit.scratch import checked


@dataclass
class TableDiff:
    table: str
    key: tuple[str, ...]
    only_live: list[dict[str, Any]] = field(default_factory=list)
    only_replayed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    total: int = 0

    @property
    def clean(self) -> bool:
        return self.total == 0


async def _primary_key(conn: asyncpg.Connection, table: str) -> tuple[str, ...]:
    rows = await conn.fetch(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        f"periodya.{table}")
    return tuple(r["attname"] for r in rows)


async def diff_table(conn: asyncpg.Connection, scratch: str, table: str, limit: int = 20) -> TableDiff:
    """Rows only live, only replayed, or different (with the differing columns), at most `limit` each."""
    key = await _primary_key(conn, table)
    on = " AND ".join(f"l.{k} = r.{k}" for k in key)
    rows = await conn.fetch(
        f"SELECT to_jsonb(l) AS live, to_jsonb(r) AS replayed FROM periodya.{table} l "
        f"FULL JOIN {checked(scratch)}.{table} r ON {on} "
        "WHERE to_jsonb(l) IS DISTINCT FROM to_jsonb(r)")
    out = TableDiff(table, key, total=len(rows))
    for r in rows:
        live, replayed = r["live"], r["replayed"]
        if replayed is None and len(out.only_live) < limit:
            out.only_live.append(live)
        elif live is None and len(out.only_replayed) < limit:
            out.only_replayed.append(replayed)
        elif live is not None and replayed is not None and len(out.changed) < limit:
            cols = {c: (live.get(c), replayed.get(c)) for c in live if live.get(c) != replayed.get(c)}
            out.changed.append(({k: live[k] for k in key}, {c: v[0] for c, v in cols.items()},
                                {c: v[1] for c, v in cols.items()}))
    return out


async def columns_of(conn: asyncpg.Connection, table: str) -> list[str]:
    """The live table's columns, in table order."""
    rows = await conn.fetch("SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
                            "AND NOT attisdropped ORDER BY attnum", f"periodya.{table}")
    return [r["attname"] for r in rows]


async def count_rows(conn: asyncpg.Connection, schema: str, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {schema}.{table}"))
