"""Catch-up projections: follow the log and apply it to views that are not updated inline.

`CatchUp(store, name, modules)` reads pages in commit-safe (tx, seq) order below the snapshot horizon
(EventStore.read_all), applies each page with the projections' own `apply` functions (the same ones the
inline path and replay use), and moves its checkpoint (table `checkpoints`, row `name`) in the SAME
transaction as the view updates. A crash, a cancelled task or a lost connection anywhere before the
commit rolls back the page and the checkpoint together; after the commit both are durable. A restart
therefore resumes exactly after the last page applied: nothing is applied twice, nothing is skipped.

The checkpoint row is locked (FOR UPDATE) before the page is read, so two runners with the same name
serialise page by page instead of applying one page twice. `schema`, when given, puts the views in that
schema (search_path = schema, periodya): a follower can maintain a full copy of the projections apart
from the live ones, e.g. on the way to a projection change.

Wake-ups: LISTEN periodya_events (a hint sent after each commit) with a polling fallback.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from periodya.db import projections_sql
from periodya.eventstore.model import Position
from periodya.eventstore.store import NOTIFY_CHANNEL, EventStore

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class CatchUp:
    def __init__(self, store: EventStore, name: str, modules: Sequence[ModuleType | Any], *,
                 schema: str | None = None, page: int = 1000, poll_interval: float = 1.0) -> None:
        if schema is not None and (not _SCHEMA.match(schema) or schema in ("periodya", "public")):
            raise ValueError(f"not a usable schema for a catch-up projection: {schema!r}")
        self.store, self.name, self.modules = store, name, list(modules)
        self.schema, self.page, self.poll_interval = schema, page, poll_interval
        self._wake = asyncio.Event()

    async def prepare(self) -> None:
        """Create the checkpoint row and, for a separate schema, its projection tables (idempotent)."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            if self.schema is not None:
                exists = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema)
                if not exists:
                    await conn.execute(f"CREATE SCHEMA {self.schema}")
                    await conn.execute(f"SET LOCAL search_path = {self.schema}, periodya")
                    await conn.execute(projections_sql())
            await conn.execute("INSERT INTO periodya.checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                               self.name)

    async def position(self) -> Position:
        row = await self.store.pool.fetchrow(
            "SELECT tx::text::bigint AS tx, seq FROM periodya.checkpoints WHERE name = $1", self.name)
        return Position(row["tx"], row["seq"]) if row else Position(0, 0)

    async def step(self) -> int:
        """Apply at most one page and commit it with the checkpoint. Returns the number of events applied."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT tx::text::bigint AS tx, seq FROM periodya.checkpoints WHERE name = $1 "
                                      "FOR UPDATE", self.name)
            if row is None:
                raise LookupError(f"no checkpoint {self.name!r}: call prepare() first")
            events = await self.store.read_all(Position(row["tx"], row["seq"]), self.page, conn=conn)
            if not events:
                return 0
            if self.schema is not None:
                await conn.execute(f"SET LOCAL search_path = {self.schema}, periodya")
            for module in self.modules:
                await module.apply(conn, events)
            last = events[-1].position
            await conn.execute("UPDATE periodya.checkpoints SET tx = $2::text::xid8, seq = $3, updated_at = now() "
                               "WHERE name = $1", self.name, str(last.tx), last.seq)
            return len(events)

    async def run_until_caught_up(self) -> int:
        """Apply pages until none is left below the horizon; returns the events applied."""
        await self.prepare()
        total = 0
        while n := await self.step():
            total += n
        return total

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow the log until `stop` is set (or the task is cancelled: the page in flight rolls back)."""
        await self.prepare()
        async with self.store.pool.acquire() as listener:  # released even when cancelled at any await
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            try:
                await self._follow(stop)
            finally:
                await listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)

    async def _follow(self, stop: asyncio.Event | None) -> None:
        while stop is None or not stop.is_set():
            self._wake.clear()
            if await self.step():
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
