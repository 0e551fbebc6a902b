"""Timelines from the log: a payout (with its ledger groups and the provider's events), an escrow,
an account (every ledger entry touching it, with a running balance).

Read from periodya.events alone, in one REPEATABLE READ snapshot, in commit-safe (tx, seq) order; the
current state shown next to a payout or escrow is folded from its stream with the domain's evolve.
The provider-event and ledger lookups filter jsonb fields, which is a pass over the log (there is no
index on them by design: audits are rare, appends are not).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import asyncpg

from periodya.domain import escrow, payout
from periodya.domain.errors import NotFound
from periodya.event_registry import REGISTRY
from periodya.eventstore.store import EVENT_COLUMNS, row_to_event
from periodya.eventstore.timeline import rfc3339, snapshot, timeline_item

_PROVIDER_IDS = ("SELECT DISTINCT data->>'providerPayoutId' FROM periodya.events WHERE stream_id = $1 "
                 "AND data->>'providerPayoutId' IS NOT NULL")
_PAYOUT = f"""
SELECT {EVENT_COLUMNS} FROM periodya.events
 WHERE stream_id = $1
    OR (event_type = 'LedgerGroupPosted' AND data->>'subject' = $1)
    OR stream_id IN (SELECT stream_id FROM periodya.events WHERE event_type = 'ProviderEventReceived'
                      AND (data->>'payoutId' = $2 OR data->>'providerPayoutId' = ANY($3::text[])))
 ORDER BY tx, seq"""
_ESCROW = f"""
SELECT {EVENT_COLUMNS} FROM periodya.events
 WHERE stream_id = $1 OR (event_type = 'LedgerGroupPosted' AND data->>'subject' = $1)
 ORDER BY tx, seq"""
_ACCOUNT = f"""
SELECT {EVENT_COLUMNS} FROM periodya.events
 WHERE event_type = 'LedgerGroupPosted'
   AND data->'entries' @> jsonb_build_array(jsonb_build_object('account', $1::text))
 ORDER BY tx, seq"""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _state_json(state: Any) -> dict[str, Any] | None:
    if state is None:
        return None
    return {_camel(k): rfc3339(v) if hasattr(v, "tzinfo") else v for k, v in asdict(state).items()}


async def resolve_payout(conn: asyncpg.Connection, any_id: str) -> str:
    """Our payout id, given it or the provider's id for it (from the log); NotFound otherwise."""
    if await conn.fetchval("SELECT 1 FROM periodya.events WHERE stream_id = $1 LIMIT 1", payout.stream(any_id)):
        return any_id
    found = await conn.fetchval(
        "SELECT stream_id FROM periodya.events WHERE stream_id LIKE 'payout-%' AND data->>'providerPayoutId' = $1 "
        "ORDER BY seq LIMIT 1", any_id)
    if found is None:
        raise NotFound(f"no payout with id or provider id {any_id!r}")
    return str(found)[len("payout-"):]


async def payout_history(pool: asyncpg.Pool, any_id: str) -> dict[str, Any]:
    """The payout's events, its ledger groups and every provider event naming it, in commit order."""
    async with snapshot(pool) as conn:
        payout_id = await resolve_payout(conn, any_id)
        sid = payout.stream(payout_id)
        provider_ids = [r[0] for r in await conn.fetch(_PROVIDER_IDS, sid)]
        rows = await conn.fetch(_PAYOUT, sid, payout_id, provider_ids)
    state: payout.PayoutState | None = None
    for row in rows:
        if row["stream_id"] == sid:
            state = payout.evolve(state, REGISTRY.decode(row_to_event(row)))
    return {"payoutId": payout_id, "providerPayoutIds": provider_ids, "state": _state_json(state),
            "events": [timeline_item(r) for r in rows]}


async def escrow_history(pool: asyncpg.Pool, escrow_id: str) -> dict[str, Any]:
    sid = escrow.stream(escrow_id)
    async with snapshot(pool) as conn:
        rows = await conn.fetch(_ESCROW, sid)
    if not any(r["stream_id"] == sid for r in rows):
        raise NotFound(f"no escrow {escrow_id!r}")
    state: escrow.EscrowState | None = None
    for row in rows:
        if row["stream_id"] == sid:
            state = escrow.evolve(state, REGISTRY.decode(row_to_event(row)))
    body = _state_json(state)
    if body is not None and state is not None:
        body["balance"] = state.balance
    return {"escrowId": escrow_id, "state": body, "events": [timeline_item(r) for r in rows]}


async def account_history(pool: asyncpg.Pool, account: str) -> dict[str, Any]:
    """Every ledger entry on `account`, with its group, the stream that caused it, and the running
    balance (credits minus debits) per currency after it."""
    async with snapshot(pool) as conn:
        rows = await conn.fetch(_ACCOUNT, account)
    if not rows:
        raise NotFound(f"no ledger entry touches account {account!r}")
    running: dict[str, int] = {}
    entries: list[dict[str, Any]] = []
    for row in rows:
        data, meta = row["data"], row["metadata"]
        for line, entry in enumerate(data["entries"], start=1):
            if entry["account"] != account:
                continue
            cur = entry["currency"]
            running[cur] = running.get(cur, 0) + entry["credit"] - entry["debit"]
            entries.append({"position": row["seq"], "tx": row["tx"], "recordedAt": rfc3339(row["recorded_at"]),
                            "groupId": data["groupId"], "kind": data["kind"], "subject": data["subject"],
                            "line": line, "currency": cur, "debit": entry["debit"], "credit": entry["credit"],
                            "balance": running[cur], "actor": meta.get("actor"), "reason": meta.get("reason"),
                            "requestId": meta.get("requestId")})
    return {"account": account, "balances": [{"currency": c, "balance": b} for c, b in sorted(running.items())],
            "entries": entries}
