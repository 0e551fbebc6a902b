"""Ledger groups and their entries, as posted."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from periodya.eventstore.model import RecordedEvent

TABLES = ("ledger_groups", "ledger_entries")
TYPES = frozenset({"LedgerGroupPosted"})


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
    groups = [e for e in events if e.type in TYPES]
    if not groups:
        return
    await conn.execute(
        "INSERT INTO ledger_groups (group_id, kind, subject, seq, recorded_at) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[])",
        [g.data["groupId"] for g in groups], [g.data["kind"] for g in groups], [g.data["subject"] for g in groups],
        [g.seq for g in groups], [g.recorded_at for g in groups])
    rows = [(g.data["groupId"], line, e["account"], e["currency"], e["debit"], e["credit"])
            for g in groups for line, e in enumerate(g.data["entries"], start=1)]
    await conn.execute(
        "INSERT INTO ledger_entries (group_id, line, account, currency, debit, credit) "
        "SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])",
        *map(list, zip(*rows, strict=True)))
