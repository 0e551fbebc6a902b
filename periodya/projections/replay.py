"""Rebuild projections from the log into a scratch schema, and diff them against the live tables.

The rebuild runs the SAME apply functions as the live path. It reads the log inside one
REPEATABLE READ transaction and diffs against the live tables in that same snapshot, so writers
that commit meanwhile cannot produce false differences: the snapshot holds exactly the events
whose effects the live tables show. Within a snapshot every visible event is committed, so plain
(tx, seq) order is the commit-safe order and no horizon filter is needed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from periodya.db import projections_sql
from periodya.eventstore.store import EVENT_COLUMNS, row_to_event
from periodya.projections import PROJECTIONS, Projection

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Inside one snapshot every visible event is committed, so (tx, seq) order is commit order.
EVENTS_IN_ORDER = f"SELECT {EVENT_COLUMNS} FROM periodya.events {{where}} ORDER BY tx, seq"


@dataclass(frozen=True)
class Until:
    """Stop after this point: a global position (seq, taken in commit order) or a moment."""

    seq: int | None = None
    at: datetime | None = None


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


def _check_schema(name: str) -> str:
    if not _SCHEMA_NAME.match(name) or name in ("periodya", "public", "pg_catalog"):
        raise ValueError(f"not a usable scratch schema name: {name!r}")
    return name


def selected(names: Sequence[str] | None) -> dict[str, Projection]:
    if not names or list(names) == ["all"]:
        return dict(PROJECTIONS)
    unknown = [n for n in names if n not in PROJECTIONS]
    if unknown:
        raise ValueError(f"unknown projection(s) {unknown}; known: {', '.join(PROJECTIONS)}")
    return {n: PROJECTIONS[n] for n in names}


async def _where(conn: asyncpg.Connection, until: Until | None) -> tuple[str, list[Any]]:
    if until is None:
        return "", []
    if until.seq is not None:
        tx = await conn.fetchval("SELECT tx FROM periodya.events WHERE seq = $1", until.seq)
        if tx is None:
            raise ValueError(f"no event at position {until.seq}")
        return "WHERE (tx, seq) <= ($1::xid8, $2::bigint)", [tx, until.seq]
    return "WHERE recorded_at <= $1", [until.at]


async def rebuild_in(conn: asyncpg.Connection, scratch: str, names: Sequence[str] | None = None,
                     until: Until | None = None, batch: int = 5000) -> int:
    """Inside the caller's transaction: build `scratch` from the log. Returns the events replayed."""
    scratch = _check_schema(scratch)
    projections = selected(names)
    await conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE; CREATE SCHEMA {scratch}")
    await conn.execute(f"SET LOCAL search_path = {scratch}, periodya")
    await conn.execute(projections_sql())
    where, args = await _where(conn, until)
    count = 0
    pending: list[Any] = []
    async for row in conn.cursor(EVENTS_IN_ORDER.format(where=where), *args, prefetch=batch):
        pending.append(row_to_event(row))
        if len(pending) >= batch:
            count += await _apply(conn, projections, pending)
            pending = []
    count += await _apply(conn, projections, pending)
    return count


async def _apply(conn: asyncpg.Connection, projections: dict[str, Projection], events: list[Any]) -> int:
    for module in projections.values():
        await module.apply(conn, events)
    return len(events)


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
        f"FULL JOIN {_check_schema(scratch)}.{table} r ON {on} "
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


async def replay_and_diff(pool: asyncpg.Pool, scratch: str = "replay_scratch", names: Sequence[str] | None = None,
                          *, keep: bool = False) -> list[TableDiff]:
    """Rebuild `names` (default all) from the whole log and diff every table against live, in one snapshot."""
    async with pool.acquire() as conn:
        tx = conn.transaction(isolation="repeatable_read")
        await tx.start()
        try:
            await rebuild_in(conn, scratch, names)
            tables = [t for m in selected(names).values() for t in m.TABLES]
            diffs = [await diff_table(conn, scratch, t) for t in tables]
        except BaseException:
            await tx.rollback()
            raise
        if keep:
            await tx.commit()
        else:
            await tx.rollback()  # nothing of the scratch schema survives
    return diffs
