"""Read models as the API shows them (camelCase, RFC 3339 UTC)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from periodya.domain import payout
from periodya.domain.errors import NotFound
from periodya.event_registry import REGISTRY
from periodya.eventstore.model import RecordedEvent
from periodya.projections import outbox


def rfc3339(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


async def escrow_view(conn: asyncpg.Connection | asyncpg.Pool, escrow_id: str) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM escrows WHERE escrow_id = $1", escrow_id)
    if row is None:
        raise NotFound(f"no escrow {escrow_id!r}")
    # `released` counts everything released out of the escrow, platform fees included.
    return {"escrowId": row["escrow_id"], "currency": row["currency"], "funded": row["funded"],
            "released": row["released"], "refunded": row["refunded"],
            "balance": row["funded"] - row["released"] - row["refunded"],
            "createdAt": rfc3339(row["created_at"]), "updatedAt": rfc3339(row["updated_at"])}


_PAYOUT_SQL = """
SELECT p.*, o.status AS outbox_status, o.attempts AS outbox_attempts, o.last_error AS outbox_last_error,
       o.next_attempt_at AS outbox_next_attempt_at
  FROM payouts p LEFT JOIN outbox o USING (payout_id)
 WHERE {where}"""


def _payout_json(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {
        "payoutId": row["payout_id"], "payeeId": row["payee_id"], "amount": row["amount"],
        "currency": row["currency"], "destination": row["destination"], "status": row["status"],
        "providerPayoutId": row["provider_payout_id"], "providerStatus": row["provider_status"],
        "ledgerFinalized": row["ledger_finalized"], "fundsReturned": row["funds_returned"],
        "quarantineReason": row["quarantine_reason"],
        "outbox": {"status": row["outbox_status"], "attempts": row["outbox_attempts"],
                   "lastError": row["outbox_last_error"], "nextAttemptAt": rfc3339(row["outbox_next_attempt_at"])},
        "createdAt": rfc3339(row["created_at"]), "updatedAt": rfc3339(row["updated_at"]),
    }


def new_payout_view(requested: RecordedEvent) -> dict[str, Any]:
    """What `payout_view` reads back right after a payout's first event (PayoutRequested) is projected,
    built without the round trip: the same pure folds the payouts and outbox projections store
    (payout.evolve, outbox.step) and the event's recorded time as every timestamp."""
    state = payout.evolve(None, REGISTRY.decode(requested))
    task = outbox.step(None, requested)
    if state is None or task is None or requested.stream_version != 1:
        raise ValueError(f"not a payout's first event: {requested.type} v{requested.stream_version}")
    at = requested.recorded_at
    return _payout_json({
        **vars(state), "created_at": at, "updated_at": at, "outbox_status": task.status,
        "outbox_attempts": task.attempts, "outbox_last_error": task.last_error,
        "outbox_next_attempt_at": task.next_attempt_at})


async def payout_view(conn: asyncpg.Connection | asyncpg.Pool, payout_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(_PAYOUT_SQL.format(where="p.payout_id = $1"), payout_id)
    if row is None:
        raise NotFound(f"no payout {payout_id!r}")
    return _payout_json(row)


async def resolve_payout_id(conn: asyncpg.Connection | asyncpg.Pool, any_id: str) -> str:
    """Admin paths take our payout id or the provider's; return ours."""
    found = await conn.fetchval(
        "SELECT payout_id FROM payouts WHERE payout_id = $1 UNION ALL "
        "SELECT payout_id FROM payouts WHERE provider_payout_id = $1 LIMIT 1", any_id)
    if found is None:
        raise NotFound(f"no payout with id or provider id {any_id!r}")
    return str(found)


async def payee_balances(conn: asyncpg.Connection | asyncpg.Pool, payee_id: str) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT currency, sum(balance) FILTER (WHERE account = 'payable:' || $1) AS available, "
        "sum(balance) FILTER (WHERE account = 'inflight:' || $1) AS in_flight FROM balances "
        "WHERE account IN ('payable:' || $1, 'inflight:' || $1) GROUP BY currency ORDER BY currency", payee_id)
    return {"payeeId": payee_id, "balances": [
        {"currency": r["currency"], "available": int(r["available"] or 0), "inFlight": int(r["in_flight"] or 0)}
        for r in rows]}


async def payout_events(conn: asyncpg.Connection | asyncpg.Pool, payout_id: str) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT seq, stream_version, event_type, data, metadata, recorded_at FROM events "
        "WHERE stream_id = $1 ORDER BY stream_version", f"payout-{payout_id}")
    if not rows:
        raise NotFound(f"no payout {payout_id!r}")
    return {"payoutId": payout_id, "events": [
        {"position": r["seq"], "version": r["stream_version"], "type": r["event_type"], "data": r["data"],
         "metadata": r["metadata"], "recordedAt": rfc3339(r["recorded_at"])} for r in rows]}


payout_json = _payout_json
"""Public: the admin payout search and read (handlers/payout_search.py) render rows as payout_view does."""
