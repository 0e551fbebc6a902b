"""Row helpers shared by the projections."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import asyncpg

from periodya.projections.port import ProjectionConnection


def values(obj: Any) -> tuple[Any, ...]:
    """A dataclass instance's field values in declaration order, without dataclasses.astuple's deep copy."""
    return tuple(vars(obj).values())


COPY_FROM = 200
"""Batches of at least this many rows are inserted with COPY: replay's pages of thousands of events.
Smaller ones (the inline path's few rows per command) take one INSERT ... SELECT FROM unnest(...)
round trip, where COPY would need two. Both insert exactly the same rows, with the same constraints:
the size decides how the rows are sent, never what is written (issue 14's rule). It stays because it
pays and both sides are tested alike:
* tests: tests/integration/test_replay_every_path.py runs every rebuild path (rebuild_in, the audit
  rebuild, swap catch-up, the follower, `periodya replay --until --swap`) over a log of every event type
  with this threshold at 1 and at 10**9, and test_replay's copy/unnest test writes live tables one way
  and replays them the other, both ways round;
* benchmark (issue 14, 2 shared cores, alternating runs of `python -m bench replay --events 100000
  --rounds 3`): with this branch removed (unnest for every size) the audit rebuild took 2.00 and 2.12
  client CPU s and 0.98 and 1.03 server CPU s, against 1.67 and 1.68 / 0.80 and 0.93 with COPY:
  about a fifth more CPU per replayed event."""


async def fetch_by_keys(conn: ProjectionConnection, table: str, key: str, keys: Sequence[str]) -> list[asyncpg.Record]:
    """The rows of `table` whose text primary key `key` is one of `keys`, each once, as `key = ANY(keys)`
    would give them (missing keys give no row, a key listed twice one row).

    One index probe per key, whatever the table's statistics. The obvious `WHERE key = ANY($1)` (or a
    join to unnest($1)) is planned from the statistics of the moment, and asyncpg's prepared statements
    keep a generic plan: one made while a new database's table was small and never analyzed is a
    sequential scan, and it stays one as the table grows until autovacuum's first ANALYZE (a minute or
    more). On a fresh database under load that scan, repeated for every batch, cost more PostgreSQL CPU
    than the rest of the pipeline's statements together. The LIMIT stops the planner from flattening
    the lateral subquery into a join, so the probe is always an index scan on `key`."""
    if not keys:
        return []
    rows: list[asyncpg.Record] = await conn.fetch(by_keys_sql(table, key), keys)
    return rows


@functools.cache
def by_keys_sql(table: str, key: str) -> str:
    """fetch_by_keys' statement: $1 is the text[] of keys."""
    return (f"SELECT t.* FROM (SELECT DISTINCT unnest($1::text[])) AS k(key) "
            f"CROSS JOIN LATERAL (SELECT * FROM {table} WHERE {key} = k.key LIMIT 1) AS t")


async def insert(conn: ProjectionConnection, table: str, columns: Sequence[tuple[str, str]],
                 rows: list[tuple[Any, ...]]) -> None:
    """Insert `rows` (tuples in `columns` order; columns are (name, SQL type)) into `table`, an
    unqualified name resolved by the search_path (live tables, or a replay's scratch schema)."""
    if not rows:
        return
    if len(rows) >= COPY_FROM:
        await conn.copy_records_to_table(table, records=rows, columns=[name for name, _ in columns])
        return
    await conn.execute(_unnest_insert(table, tuple(columns)), *map(list, zip(*rows, strict=True)))


@functools.cache
def _unnest_insert(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(columns, start=1))
    return f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})"
