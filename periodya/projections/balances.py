"""Account balances (credits minus debits per account and currency), updated inline.

Rows are upserted in (account, currency) order, so concurrent transactions take row locks in one
stable order. The `no_overdraft` CHECK is the database's backstop behind the command's own check.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from periodya.domain.accounts import is_protected
from periodya.eventstore.model import RecordedEvent
from periodya.projections.port import ProjectionConnection

TABLES = ("balances",)
TYPES = frozenset({"LedgerGroupPosted"})
_UPSERT = """
INSERT INTO balances AS b (account, currency, balance, debits, credits, protected, last_seq, updated_at)
SELECT a, c, cr - dr, dr, cr,
       -- CHECK constraints run on the candidate row before ON CONFLICT; only a new account's candidate
       -- is the final row, so only it carries the real flag. An updated row keeps b.protected and is
       -- checked with its final balance. A candidate whose balance (cr - dr) is not negative passes
       -- no_overdraft whatever its flag, so it carries the real flag without looking the row up: the
       -- lookup (a walk over every version of a row updated often in one transaction, as in replay)
       -- is only needed for a negative one.
       CASE WHEN cr - dr >= 0 THEN p
            ELSE p AND NOT EXISTS (SELECT 1 FROM balances x WHERE x.account = a AND x.currency = c) END, s, t
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bool[], $6::bigint[], $7::timestamptz[])
       AS u(a, c, dr, cr, p, s, t)
 ORDER BY a, c
ON CONFLICT (account, currency) DO UPDATE
   SET protected = b.protected, balance = b.balance + EXCLUDED.balance, debits = b.debits + EXCLUDED.debits,
       credits = b.credits + EXCLUDED.credits, last_seq = EXCLUDED.last_seq, updated_at = EXCLUDED.updated_at"""


async def apply(conn: ProjectionConnection, events: Sequence[RecordedEvent]) -> None:
    totals: dict[tuple[str, str], list[int]] = {}
    last: dict[tuple[str, str], tuple[int, datetime]] = {}
    for ev in events:
        if ev.type not in TYPES:
            continue
        for entry in ev.data["entries"]:
            key = (entry["account"], entry["currency"])
            t = totals.setdefault(key, [0, 0])
            t[0] += entry["debit"]
            t[1] += entry["credit"]
            last[key] = (ev.seq, ev.recorded_at)
    if not totals:
        return
    keys = sorted(totals)
    await conn.execute(_UPSERT, [k[0] for k in keys], [k[1] for k in keys], [totals[k][0] for k in keys],
                       [totals[k][1] for k in keys], [is_protected(k[0]) for k in keys],
                       [last[k][0] for k in keys], [last[k][1] for k in keys])
