"""Payout status view, folded with the domain's own `evolve` so the view cannot disagree with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime

from periodya.domain import payout
from periodya.event_registry import REGISTRY
from periodya.eventstore.model import RecordedEvent
from periodya.projections.port import ProjectionConnection
from periodya.projections.rows import fetch_by_keys, values

TABLES = ("payouts",)
PREFIX = "payout-"
_FIELDS = [f.name for f in fields(payout.PayoutState)]
_COLUMNS = [*_FIELDS, "created_at", "updated_at", "status_changed_at"]
_SQL_TYPES = {"payout_id": "text", "payee_id": "text", "amount": "bigint", "currency": "text", "destination": "text",
              "status": "text", "provider_payout_id": "text", "provider_status": "text", "ledger_finalized": "boolean",
              "funds_returned": "boolean", "quarantine_reason": "text", "attempts": "int", "last_error": "text",
              "next_attempt_at": "timestamptz", "version": "bigint", "created_at": "timestamptz",
              "updated_at": "timestamptz", "status_changed_at": "timestamptz"}
# One statement for the whole batch (unnest), rather than one per row: replay applies pages of thousands.
_UPSERT = (
    f"INSERT INTO payouts ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{_SQL_TYPES[c]}[]" for i, c in enumerate(_COLUMNS, start=1)) + ") "
    "ON CONFLICT (payout_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c not in ("payout_id", "created_at")))


def payout_id_of(event: RecordedEvent) -> str | None:
    return event.stream_id[len(PREFIX):] if event.stream_id.startswith(PREFIX) else None


async def apply(conn: ProjectionConnection, events: Sequence[RecordedEvent]) -> None:
    mine = [e for e in events if e.stream_id.startswith(PREFIX)]
    if not mine:
        return
    ids = sorted({e.stream_id[len(PREFIX):] for e in mine if e.stream_version > 1})  # v1 rows are new
    rows = await fetch_by_keys(conn, "payouts", "payout_id", ids)
    states: dict[str, payout.PayoutState | None] = {
        r["payout_id"]: payout.PayoutState(**{f: r[f] for f in _FIELDS}) for r in rows}
    times: dict[str, list[datetime]] = {
        r["payout_id"]: [r["created_at"], r["updated_at"], r["status_changed_at"]] for r in rows}
    touched: set[str] = set()
    for ev in mine:
        pid = ev.stream_id[len(PREFIX):]
        before = states.get(pid)
        after = payout.evolve(before, REGISTRY.decode(ev))
        assert after is not None
        states[pid] = after
        t = times.setdefault(pid, [ev.recorded_at, ev.recorded_at, ev.recorded_at])
        t[1] = ev.recorded_at
        if before is None or before.status != after.status:
            t[2] = ev.recorded_at
        touched.add(pid)
    rows_out = [(*values(states[p]), *times[p]) for p in sorted(touched)]
    await conn.execute(_UPSERT, *zip(*rows_out, strict=True))
