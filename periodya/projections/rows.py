"""Row helpers shared by the projections."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import asyncpg


def values(obj: Any) -> tuple[Any, ...]:
    """A dataclass instance's field values in declaration order, without dataclasses.astuple's deep copy."""
    return tuple(vars(obj).values())


COPY_FROM = 200
"""Batches of at least this many rows are inserted with COPY: replay's pages of thousands of events.
Smaller ones (the inline path's few rows per command) take one INSERT ... SELECT FROM unnest(...)
round trip, where COPY would need two. Both insert exactly the same rows, with the same constraints."""


async def insert(conn: asyncpg.Connection, table: str, columns: Sequence[tuple[str, str]],
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
