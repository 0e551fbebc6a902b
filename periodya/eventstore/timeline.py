"""The log as a reader shows it: one event as a timeline item, a read-only snapshot of the log, and the
one timestamp format every timeline and audit answer uses. `periodya history`, the audit routes and the
admin's one-payout read all show events through `timeline_item`, so a payout's timeline reads the same
in the terminal, the API and the console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg


def rfc3339(moment: datetime | None) -> str:
    """UTC, always with microseconds: 2026-01-05T10:00:00.000000Z."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _kind(stream_id: str) -> str:
    return stream_id.split("-", 1)[0]


def timeline_item(row: asyncpg.Record) -> dict[str, Any]:
    """One event row (EVENT_COLUMNS) as a timeline entry: position, stream, type, actor, reason, data."""
    meta = row["metadata"]
    return {"position": row["seq"], "tx": row["tx"], "stream": row["stream_id"], "kind": _kind(row["stream_id"]),
            "version": row["stream_version"], "type": row["event_type"], "recordedAt": rfc3339(row["recorded_at"]),
            "actor": meta.get("actor"), "reason": meta.get("reason"), "requestId": meta.get("requestId"),
            "data": row["data"], "metadata": meta}


@asynccontextmanager
async def snapshot(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a read-only REPEATABLE READ transaction: every query sees one state of the log."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL statement_timeout = 0")
        yield conn
