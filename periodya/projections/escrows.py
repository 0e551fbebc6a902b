"""Escrow view: funded, released (including fees), refunded, folded with the domain's evolve."""

from __future__ import annotations

from collections.abc import Sequence

from periodya.domain import escrow
from periodya.event_registry import REGISTRY
from periodya.eventstore.model import RecordedEvent
from periodya.projections.port import ProjectionConnection
from periodya.projections.rows import fetch_by_keys, values

TABLES = ("escrows",)
TYPES = frozenset({"EscrowFunded", "EscrowReleased", "EscrowRefunded"})
# One statement for the whole batch (unnest), rather than one per row: replay applies pages of thousands.
_UPSERT = """
INSERT INTO escrows (escrow_id, currency, funded, released, refunded, version, created_at, updated_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                     $7::timestamptz[], $8::timestamptz[])
ON CONFLICT (escrow_id) DO UPDATE SET funded = EXCLUDED.funded, released = EXCLUDED.released,
    refunded = EXCLUDED.refunded, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"""


async def apply(conn: ProjectionConnection, events: Sequence[RecordedEvent]) -> None:
    mine = [e for e in events if e.type in TYPES]
    if not mine:
        return
    ids = sorted({e.data["escrowId"] for e in mine if e.stream_version > 1})  # v1 rows are new
    rows = await fetch_by_keys(conn, "escrows", "escrow_id", ids)
    states: dict[str, escrow.EscrowState | None] = {
        r["escrow_id"]: escrow.EscrowState(r["escrow_id"], r["currency"], r["funded"], r["released"],
                                           r["refunded"], r["version"]) for r in rows}
    created = {r["escrow_id"]: r["created_at"] for r in rows}
    updated = {}
    for ev in mine:
        eid = ev.data["escrowId"]
        states[eid] = escrow.evolve(states.get(eid), REGISTRY.decode(ev))
        created.setdefault(eid, ev.recorded_at)
        updated[eid] = ev.recorded_at
    rows_out = [(*values(states[i]), created[i], updated[i]) for i in sorted(updated)]
    await conn.execute(_UPSERT, *zip(*rows_out, strict=True))
