"""Webhooks refused for a bad or stale signature: counted per minute in PostgreSQL (table
webhook_refusals), so health and the sentinel see the refusals of every serve process.

The store is bounded whatever a stranger sends: one row per minute, upserted (a count, never an event or
a row per refusal), and rows older than a day are deleted by the same statement. Health reports the sum
over the last hour (`webhooksRefused`); the sentinel check WEBHOOK_SIGNATURES_FAILING
(runners/webhook_check.py) raises an alert while refusals persist and resolves it once they stop.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

KEEP = "1 day"
_RECORD = f"""
WITH pruned AS (DELETE FROM webhook_refusals WHERE minute < now() - interval '{KEEP}')
INSERT INTO webhook_refusals (minute, refused, last_reason) VALUES (date_trunc('minute', now()), 1, $1)
ON CONFLICT (minute) DO UPDATE SET refused = webhook_refusals.refused + 1, last_reason = EXCLUDED.last_reason"""


async def record(pool: asyncpg.Pool, reason: str) -> None:
    """Count one refusal in the current minute (`reason`: SignatureError.reason, a fixed word)."""
    await pool.execute(_RECORD, reason[:64])


async def refused_since(conn: asyncpg.Pool | asyncpg.Connection, since: datetime) -> tuple[int, int, str | None]:
    """(refusals, distinct minutes with refusals, the latest reason) from `since` on."""
    row = await conn.fetchrow(
        "SELECT coalesce(sum(refused), 0)::bigint AS n, count(*) AS minutes, "
        "(SELECT last_reason FROM webhook_refusals WHERE minute >= $1 ORDER BY minute DESC LIMIT 1) AS reason "
        "FROM webhook_refusals WHERE minute >= $1", since)
    return row["n"], row["minutes"], row["reason"]
