"""The connection the rebuild engine (audit.engine) hands the apply functions: one connection,
several concurrent callers, one statement at a time."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

import asyncpg


class SharedConnection:
    """One connection shared by concurrent apply calls, one statement at a time (FIFO).

    Each projection writes only its own tables (its TABLES), so the statements of different
    projections commute; each apply call still awaits its own statements in order. Running the
    projections' apply calls of a batch concurrently lets one compute its rows while the server
    executes another's statement. It implements projections.port.ProjectionConnection, every method an
    apply function may call (mypy checks it where the rebuild hands it to the apply functions); any
    other method of the connection is awaited under the same lock, so a method added to the port and not
    here still runs, one statement at a time, rather than failing the rebuild (issue 11: `executemany`
    was missing here)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._turn = asyncio.Lock()

    async def execute(self, query: str, *args: Any) -> Any:
        async with self._turn:
            return await self._conn.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._turn:
            return list(await self._conn.fetch(query, *args))

    async def copy_records_to_table(self, table_name: str, *, records: Any, columns: Sequence[str]) -> Any:
        async with self._turn:
            return await self._conn.copy_records_to_table(table_name, records=records, columns=columns)

    async def fetch_page(self, cursor: Any, size: int) -> list[Any]:
        """The next `size` rows of a cursor opened on this connection, in turn with the applies'
        statements: the engine's one-connection mode reads the log between them."""
        async with self._turn:
            return list(await cursor.fetch(size))

    def __getattr__(self, name: str) -> Any:
        # Not `inspect.iscoroutinefunction`: a pool's connection proxy wraps its methods in plain
        # functions that return coroutines. An apply awaits every connection method it calls, so every
        # other callable is awaited here, under the same lock.
        attribute = getattr(self._conn, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        async def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
            async with self._turn:
                return await attribute(*args, **kwargs)
        return one_at_a_time
