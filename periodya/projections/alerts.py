"""The alerts view: one row per raised alert, with its acknowledgement and resolution."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from periodya.eventstore.model import RecordedEvent
from periodya.projections.port import ProjectionConnection

TABLES = ("alerts",)
TYPES = frozenset({"AlertRaised", "AlertAcknowledged", "AlertResolved"})


async def apply(conn: ProjectionConnection, events: Sequence[RecordedEvent]) -> None:
    for ev in [e for e in events if e.type in TYPES]:
        d = ev.data
        if ev.type == "AlertRaised":
            await conn.execute(
                "INSERT INTO alerts (alert_id, code, severity, status, subject, details, remedy, raised_at) "
                "VALUES ($1, $2, $3, 'OPEN', $4, $5::text::jsonb, $6, $7)",
                d["alertId"], d["code"], d["severity"], d["subject"], orjson.dumps(d["details"]).decode(),
                d["remedy"], ev.recorded_at)
        elif ev.type == "AlertAcknowledged":
            await conn.execute("UPDATE alerts SET status = 'ACKNOWLEDGED', acked_at = $2, acked_by = $3, ack_note = $4 "
                               "WHERE alert_id = $1", d["alertId"], ev.recorded_at, d["by"], d.get("note"))
        elif ev.type == "AlertResolved":
            await conn.execute("UPDATE alerts SET status = 'RESOLVED', resolved_at = $2, resolved_by = $3, "
                               "resolve_note = $4, automatic = $5 WHERE alert_id = $1", d["alertId"], ev.recorded_at,
                               d["by"], d.get("note"), d.get("automatic", False))
