"""Waiting for the snapshot horizon: commit-order readers (EventStore.read_all, the sentinel's recent
mode) see an event only once every transaction that began before it has ended."""

from __future__ import annotations

import asyncio

import asyncpg


async def settled(pool: asyncpg.Pool) -> None:
    """Wait until every event is below the snapshot horizon. The horizon is cluster-wide: a transaction
    in another database (another test session on the same server) can hold it back for a moment."""
    async with asyncio.timeout(60):
        while not await pool.fetchval(  # noqa: ASYNC110 - polling the database
                "SELECT coalesce((SELECT tx FROM events ORDER BY tx DESC LIMIT 1), '0') "
                "< pg_snapshot_xmin(pg_current_snapshot())"):
            await asyncio.sleep(0.02)
