"""Provider webhook events as received, and the webhooks runner's outcome for each."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from periodya.eventstore.model import RecordedEvent
from periodya.projections.rows import insert

TABLES = ("provider_events",)
PREFIX = "provider-event-"
_RECEIVED = (("event_id", "text"), ("type", "text"), ("provider_payout_id", "text"), ("payout_id", "text"),
             ("status", "text"), ("received_seq", "bigint"), ("received_at", "timestamptz"), ("amount", "bigint"),
             ("currency", "text"))

MARK_APPLIED = "UPDATE provider_events SET applied_seq = $2, outcome = $3 WHERE event_id = $1"
JOIN_FROM = 1000
"""From this many applied events on (replay's pages of thousands), one UPDATE joined to unnest() marks them;
below it (a webhooks run marks at most its batch, 200), one MARK_APPLIED per event."""


def stream(event_id: str) -> str:
    return f"{PREFIX}{event_id}"


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
    # One statement per kind for the whole batch (COPY or unnest: rows.insert), rather than one per row.
    received = [(e.data["eventId"], e.data["type"], e.data["providerPayoutId"], e.data["payoutId"], e.data["status"],
                 e.seq, e.recorded_at, e.data.get("amount"), e.data.get("currency"))
                for e in events if e.type == "ProviderEventReceived"]
    await insert(conn, "provider_events", _RECEIVED, received)
    # Keyed by event id, the last one winning: what one UPDATE per event in order would leave behind.
    applied = {e.stream_id[len(PREFIX):]: (e.seq, e.data["outcome"])
               for e in events if e.type == "ProviderEventApplied"}
    if len(applied) >= JOIN_FROM:  # replay's pages: one join over the whole table
        await conn.execute(
            "UPDATE provider_events p SET applied_seq = u.seq, outcome = u.outcome "
            "FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(event_id, seq, outcome) "
            "WHERE p.event_id = u.event_id",
            list(applied), [a[0] for a in applied.values()], [a[1] for a in applied.values()])
    elif applied:
        # The inline path's few rows: one primary-key UPDATE per event, pipelined in one round trip.
        # The join above is planned as a hash join over a sequential scan while a new database's table
        # is small, and the prepared statement keeps that plan as the table grows (rows.fetch_by_keys).
        await conn.executemany(MARK_APPLIED, [(event_id, seq, outcome) for event_id, (seq, outcome) in applied.items()])
