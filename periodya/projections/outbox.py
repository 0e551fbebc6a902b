"""The payout outbox: one task per payout, the work list of the outbox and repair runners.

    PENDING --claim--> SENDING --accepted--> SENT --finalized / provider failed--> DONE
    SENDING --retryable failure / requeue--> PENDING (next_attempt_at)
    any --quarantined / abandoned--> FAILED (never sent again)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from periodya.domain.folding import changed
from periodya.eventstore.model import RecordedEvent
from periodya.projections.port import ProjectionConnection
from periodya.projections.rows import fetch_by_keys, values

TABLES = ("outbox",)
PREFIX = "payout-"
PENDING, SENDING, SENT, DONE, FAILED = "PENDING", "SENDING", "SENT", "DONE", "FAILED"


@dataclass(frozen=True)
class OutboxTask:
    payout_id: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime


def step(task: OutboxTask | None, ev: RecordedEvent) -> OutboxTask | None:
    """The task after one payout event. Pure; `None` until the payout is requested."""
    d, at = ev.data, ev.recorded_at
    if ev.type == "PayoutRequested":
        return OutboxTask(d["payoutId"], PENDING, 0, None, None, at, at)
    if task is None:
        return None
    # One copy per event (domain.folding.changed: dataclasses.replace without its overhead): replay runs this per event.
    if task.status == FAILED:
        return changed(task, updated_at=at)  # a failed task is never revived (quarantined or abandoned)
    match ev.type:
        case "PayoutSendStarted":
            return changed(task, updated_at=at, status=SENDING, attempts=d["attempt"], next_attempt_at=None)
        case "PayoutSent" | "PayoutProviderPaid":
            return changed(task, updated_at=at, status=SENT if task.status in (PENDING, SENDING) else task.status,
                           last_error=None)
        case "PayoutSendFailed":
            return changed(task, updated_at=at, status=PENDING, last_error=d["error"],
                           next_attempt_at=datetime.fromisoformat(d["nextAttemptAt"]))
        case "PayoutRequeued":
            return changed(task, updated_at=at, status=PENDING, next_attempt_at=None, last_error=d["reason"])
        case "PayoutFinalized" | "PayoutProviderFailed":
            return changed(task, updated_at=at, status=DONE)
        case "PayoutSendAbandoned":
            return changed(task, updated_at=at, status=FAILED, last_error=d["error"])
        case "PayoutQuarantined":
            return changed(task, updated_at=at, status=FAILED, last_error=f"quarantined: {d['reason']}")
    return changed(task, updated_at=at)


# One statement for the whole batch (unnest), rather than one per row: replay applies pages of thousands.
_UPSERT = """
INSERT INTO outbox (payout_id, status, attempts, last_error, next_attempt_at, created_at, updated_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                     $7::timestamptz[])
ON CONFLICT (payout_id) DO UPDATE SET status = EXCLUDED.status, attempts = EXCLUDED.attempts,
    last_error = EXCLUDED.last_error, next_attempt_at = EXCLUDED.next_attempt_at, updated_at = EXCLUDED.updated_at"""


async def apply(conn: ProjectionConnection, events: Sequence[RecordedEvent]) -> None:
    mine = [e for e in events if e.stream_id.startswith(PREFIX)]
    if not mine:
        return
    ids = sorted({e.stream_id[len(PREFIX):] for e in mine if e.stream_version > 1})  # v1 rows are new
    rows = await fetch_by_keys(conn, "outbox", "payout_id", ids)
    tasks: dict[str, OutboxTask | None] = {r["payout_id"]: OutboxTask(**dict(r)) for r in rows}
    for ev in mine:
        pid = ev.stream_id[len(PREFIX):]
        tasks[pid] = step(tasks.get(pid), ev)
    rows_out = [values(t) for t in tasks.values() if t is not None]
    if rows_out:
        await conn.execute(_UPSERT, *zip(*rows_out, strict=True))
