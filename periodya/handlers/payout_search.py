"""The admin's payout list and search, and the admin read of one payout (GET /api/admin/payouts[/{id}]).

Read-only. Every statement is built from the filters actually given (never `$1 IS NULL OR col = $1`,
which a generic plan cannot serve from an index), and each shape is an index scan: the list walks
payouts_created, a payee payouts_payee, a provider id payouts_provider_id, a status or an age
payouts_status_changed, stuck SENDING outbox_sending, one payout's ledger ledger_groups_subject
(tests/integration/test_admin_payouts.py plans each one generic on never-analyzed tables).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from periodya.domain import payout
from periodya.errors import BadRequest
from periodya.eventstore.store import EVENT_COLUMNS
from periodya.eventstore.timeline import snapshot, timeline_item
from periodya.handlers import views
from periodya.handlers.views import rfc3339

STATUSES = (payout.REQUESTED, payout.SENDING, payout.SENT, payout.PAID, payout.FINALIZED, payout.FAILED,
            payout.QUARANTINED, payout.CANCELLED)
STUCK = ("sending", "sent")
MAX_LIMIT = 500
_PAYOUT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # as every id the API takes (a NUL never reaches PostgreSQL)
_COLUMNS = ("p.*, o.status AS outbox_status, o.attempts AS outbox_attempts, o.last_error AS outbox_last_error, "
            "o.next_attempt_at AS outbox_next_attempt_at, o.updated_at AS outbox_updated_at")
# The order of each listing: (sort column, direction). Stuck ones come oldest first, the list newest first.
_ORDER = {None: ("p.created_at", "DESC"), "sending": ("o.updated_at", "ASC"), "sent": ("p.status_changed_at", "ASC")}


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended: its last row's sort value and payout id (keyset pagination)."""

    at: datetime
    payout_id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.at.isoformat()}|{self.payout_id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        try:
            text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            at, _, payout_id = text.partition("|")
            when = datetime.fromisoformat(at)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise BadRequest("cursor is not one this API returned") from None
        if when.tzinfo is None or not _PAYOUT_ID.fullmatch(payout_id):
            raise BadRequest("cursor is not one this API returned")
        return cls(when, payout_id)


@dataclass(frozen=True)
class PayoutQuery:
    """Validated filters (periodya/http/admin_payout_routes.py parses the query string into one)."""

    status: str | None = None
    payee_id: str | None = None
    provider_payout_id: str | None = None
    older_than_minutes: float | None = None
    stuck: str | None = None
    limit: int = 50
    cursor: Cursor | None = None


def search_sql(q: PayoutQuery, now: datetime, sending_minutes: float, sent_minutes: float) -> tuple[str, list[Any]]:
    """The one statement for `q` and its arguments (public so the plan test can plan every shape)."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if q.stuck == "sending":
        where.append(f"o.status = 'SENDING' AND o.updated_at < {arg(now - timedelta(minutes=sending_minutes))}")
    elif q.stuck == "sent":
        where.append(f"p.status = 'SENT' AND p.status_changed_at < {arg(now - timedelta(minutes=sent_minutes))}")
    if q.status is not None:
        where.append(f"p.status = {arg(q.status)}")
    if q.payee_id is not None:
        where.append(f"p.payee_id = {arg(q.payee_id)}")
    if q.provider_payout_id is not None:
        where.append(f"p.provider_payout_id = {arg(q.provider_payout_id)}")
    if q.older_than_minutes is not None:
        where.append(f"p.status_changed_at < {arg(now - timedelta(minutes=q.older_than_minutes))}")
    column, direction = _ORDER[q.stuck]
    if q.cursor is not None:
        op = "<" if direction == "DESC" else ">"
        where.append(f"({column}, p.payout_id) {op} ({arg(q.cursor.at)}, {arg(q.cursor.payout_id)})")
    join = "JOIN" if q.stuck == "sending" else "LEFT JOIN"
    sql = (f"SELECT {_COLUMNS}, {column} AS sort_at FROM payouts p {join} outbox o USING (payout_id) "
           f"WHERE {' AND '.join(where) or 'true'} ORDER BY {column} {direction}, p.payout_id {direction} "
           f"LIMIT {arg(q.limit + 1)}")
    return sql, args


def _item(row: asyncpg.Record) -> dict[str, Any]:
    body = views.payout_json(row)
    body["statusChangedAt"] = rfc3339(row["status_changed_at"])
    body["outbox"]["updatedAt"] = rfc3339(row["outbox_updated_at"])
    return body


async def search_payouts(pool: asyncpg.Pool, q: PayoutQuery, now: datetime, sending_minutes: float,
                         sent_minutes: float) -> dict[str, Any]:
    """One page of payouts matching `q`, with the cursor of the next page (null on the last)."""
    sql, args = search_sql(q, now, sending_minutes, sent_minutes)
    rows = await pool.fetch(sql, *args)
    page, more = rows[:q.limit], len(rows) > q.limit
    cursor = Cursor(page[-1]["sort_at"], page[-1]["payout_id"]).encode() if more and page else None
    return {"payouts": [_item(r) for r in page], "nextCursor": cursor}


_EVENTS = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version"
LEDGER = ("SELECT g.group_id, g.kind, g.seq, g.recorded_at, e.line, e.account, e.currency, e.debit, e.credit "
          "FROM ledger_groups g JOIN ledger_entries e USING (group_id) WHERE g.subject = $1 ORDER BY g.seq, e.line")


def _ledger(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        group = groups.setdefault(r["group_id"], {"groupId": r["group_id"], "kind": r["kind"], "position": r["seq"],
                                                  "recordedAt": rfc3339(r["recorded_at"]), "entries": []})
        group["entries"].append({"line": r["line"], "account": r["account"], "currency": r["currency"],
                                 "debit": r["debit"], "credit": r["credit"]})
    return list(groups.values())


async def payout_detail(pool: asyncpg.Pool, any_id: str) -> dict[str, Any]:
    """One payout by our id or the provider's: the payout with its outbox task, its stream's whole
    timeline (actor, reason and request id of each event) and its ledger groups, read in one snapshot.
    Provider events naming it and the rest of the audit trail: GET /api/admin/audit/payouts/{id}."""
    async with snapshot(pool) as conn:
        payout_id = await views.resolve_payout_id(conn, any_id)
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM payouts p LEFT JOIN outbox o USING (payout_id) "
                                  "WHERE p.payout_id = $1", payout_id)
        stream = payout.stream(payout_id)
        events = await conn.fetch(_EVENTS, stream)
        ledger = await conn.fetch(LEDGER, stream)
    return {"payout": _item(row), "timeline": [timeline_item(r) for r in events], "ledger": _ledger(ledger),
            "audit": f"/api/admin/audit/payouts/{payout_id}"}
