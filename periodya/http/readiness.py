"""GET /readyz: may this process take traffic? (GET /livez only says the process is up.)

Ready when, in one short query on a pooled connection (bounded by a timeout):
* the database answers;
* the schema is at this code's version: the sha256 of the schema.sql this code ships is recorded in
  `schema_migrations` (written by `periodya migrate` in the same transaction as the DDL);
* the event reader is not stalled: commit-order readers (eventstore reads, followers, the sentinel) only
  see events below the snapshot horizon, so an old open transaction stalls them. Stalled means some
  committed event has waited behind the horizon for longer than PERIODYA_READER_STALL_SECONDS (default
  300); its age is measured from its recorded_at, so a brief wait behind a normal writer never counts.
Otherwise 503 problem+json `NOT_READY` with `checks` naming what failed, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
from aiohttp import web

from periodya import db
from periodya.http.middleware import REQUEST_ID
from periodya.http.problems import problem
from periodya.http.route_helpers import json
from periodya.logging import get_logger

STALL_SECONDS = web.AppKey("reader_stall_seconds", float)
TIMEOUT_SECONDS = 2.0
log = get_logger("periodya.http.readyz")

_CHECK = """
SELECT EXISTS (SELECT 1 FROM periodya.schema_migrations WHERE digest = $1) AS schema_ok,
       (SELECT extract(epoch FROM now() - min(recorded_at)) FROM periodya.events
         WHERE tx >= pg_snapshot_xmin(pg_current_snapshot())) AS oldest_behind_seconds"""


def stall_seconds_from_env() -> float:
    raw = os.environ.get("PERIODYA_READER_STALL_SECONDS", "300")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    return value if value >= 0 else 300.0


async def _checks(pool: asyncpg.Pool, digest: str, stall: float) -> dict[str, Any]:
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            row = await pool.fetchrow(_CHECK, digest)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return {"database": "ok", "schema": "missing"}
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("not_ready", check="database", error=type(exc).__name__)
        return {"database": f"unreachable: {type(exc).__name__}"}
    behind = row["oldest_behind_seconds"]
    return {"database": "ok", "schema": "ok" if row["schema_ok"] else "outdated: run `periodya migrate`",
            "eventReader": "ok" if behind is None or float(behind) <= stall else
            f"stalled: an event has waited {float(behind):.0f} s behind an open transaction"}


async def get_readyz(request: web.Request) -> web.Response:
    from periodya.http.route_helpers import STORE

    checks = await _checks(request.app[STORE].pool, db.schema_digest(), request.app[STALL_SECONDS])
    failed = {k: v for k, v in checks.items() if v != "ok"}
    if failed or len(checks) < 3:
        detail = "; ".join(f"{k}: {v}" for k, v in failed.items())
        response = problem(503, "NOT_READY", "Not ready", detail, requestId=request.get(REQUEST_ID), checks=checks)
        response.headers["Retry-After"] = "5"
        return response
    return json({"status": "ready", "checks": checks})


def setup(app: web.Application) -> None:
    app[STALL_SECONDS] = stall_seconds_from_env()
    app.router.add_get("/readyz", get_readyz)
