"""Provider webhook events as received, and the webhooks runner's outcome for each."""

from __future__ import annotations

from collections.abc import Sequence

from periodya.eventstore.model import RecordedEvent
from periodya.projections.port import ProjectionConnection
from periodya.projections.rows import insert

TABLES = ("provider_events",)
PREFIX = "provider-event-"
_RECEIVED = (("event_id", "text"), ("type", "text"), ("provider_payout_id", "text"), ("payout_id", "text"),
             ("status", "text"), ("received_seq", "bigint"), ("received_at", "timestamptz"), ("amount", "bigint"),
             ("currency", "text"))

MARK_APPLIED = (
    "UPDATE provider_events p SET applied_seq = k.seq, outcome = k.outcome "
    "FROM (SELECT t.event_id, u.seq, u.outcome "
    "FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(event_id, seq, outcome) "
    "CROSS JOIN LATERAL (SELECT event_id FROM provider_events WHERE event_id = u.event_id LIMIT 1) AS t) AS k "
    "WHERE p.event_id = k.event_id")
"""Marks a batch of events applied, whatever its size: the webhooks run's few, replay's thousands.

The lateral probe (as in rows.fetch_by_keys) keeps this one statement right for both: under the generic
plan asyncpg's prepared statement keeps, a plain join to unnest() on a new database's small, never
analyzed table is a hash join over a sequential scan, kept as the table grows; the probe makes it a
primary-key lookup per event (tests/integration/test_hot_path_plans.py). Replay's custom plans for its
big batches may still choose a hash join, which is right there. The join alone once made the inline path
take one keyed UPDATE per event instead, a second statement chosen by batch size, and that branch was
not run by the audit's rebuild (issue 11)."""


def stream(event_id: str) -> str:
    return f"{PREFIX}{event_id}"


async def apply(conn: ProjectionConnection, events: Sequence[RecordedEvent]) -> None:
    # One statement per kind for the whole batch (COPY or unnest: rows.insert), rather than one per row.
    received = [(e.data["eventId"], e.data["type"], e.data["providerPayoutId"], e.data["payoutId"], e.data["status"],
                 e.seq, e.recorded_at, e.data.get("amount"), e.data.get("currency"))
                for e in events if e.type == "ProviderEventReceived"]
    await insert(conn, "provider_events", _RECEIVED, received)
    # Keyed by event id, the last one winning: what one UPDATE per event in order would leave behind
    # (an UPDATE ... FROM joining a row to two source rows would apply an arbitrary one of them).
    applied = {e.stream_id[len(PREFIX):]: (e.seq, e.data["outcome"])
               for e in events if e.type == "ProviderEventApplied"}
    if applied:
        await conn.execute(MARK_APPLIED, list(applied), [a[0] for a in applied.values()],
                           [a[1] for a in applied.values()])
