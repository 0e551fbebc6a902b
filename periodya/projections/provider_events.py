"""Provider webhook events as received, and the webhooks runner's outcome for each."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from periodya.eventstore.model import RecordedEvent

TABLES = ("provider_events",)
PREFIX = "provider-event-"


def stream(event_id: str) -> str:
    return f"{PREFIX}{event_id}"


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
    received = [e for e in events if e.type == "ProviderEventReceived"]
    if received:
        await conn.executemany(
            "INSERT INTO provider_events (event_id, type, provider_payout_id, payout_id, status, received_seq, "
            "received_at, amount, currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [(e.data["eventId"], e.data["type"], e.data["providerPayoutId"], e.data["payoutId"], e.data["status"],
              e.seq, e.recorded_at, e.data.get("amount"), e.data.get("currency")) for e in received])
    applied = [e for e in events if e.type == "ProviderEventApplied"]
    if applied:
        await conn.executemany(
            "UPDATE provider_events SET applied_seq = $2, outcome = $3 WHERE event_id = $1",
            [(e.stream_id[len(PREFIX):], e.seq, e.data["outcome"]) for e in applied])
