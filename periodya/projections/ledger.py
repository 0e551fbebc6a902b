"""Ledger groups and their entries, as posted."""

from __future__ import annotations

from collections.abc import Sequence

from periodya.eventstore.model import RecordedEvent
from periodya.projections.port import ProjectionConnection
from periodya.projections.rows import insert

TABLES = ("ledger_groups", "ledger_entries")
TYPES = frozenset({"LedgerGroupPosted"})
_GROUPS = (("group_id", "text"), ("kind", "text"), ("subject", "text"), ("seq", "bigint"),
           ("recorded_at", "timestamptz"))
_ENTRIES = (("group_id", "text"), ("line", "int"), ("account", "text"), ("currency", "text"), ("debit", "bigint"),
            ("credit", "bigint"))


async def apply(conn: ProjectionConnection, events: Sequence[RecordedEvent]) -> None:
    groups = [e for e in events if e.type in TYPES]
    if not groups:
        return
    await insert(conn, "ledger_groups", _GROUPS,
                 [(g.data["groupId"], g.data["kind"], g.data["subject"], g.seq, g.recorded_at) for g in groups])
    await insert(conn, "ledger_entries", _ENTRIES,
                 [(g.data["groupId"], line, e["account"], e["currency"], e["debit"], e["credit"])
                  for g in groups for line, e in enumerate(g.data["entries"], start=1)])
