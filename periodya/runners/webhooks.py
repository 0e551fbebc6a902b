"""The webhooks job (batch 200): apply stored provider events in the order they arrived.

paid -> PAID and the ledger finalized (in-flight -> cash) in the same commit; failed/canceled ->
FAILED with funds back (a compensating group if it had been finalized). Each event is marked applied
(ProviderEventApplied) in the same transaction as its effects, so it is applied exactly once even when
two runs overlap: each event is claimed with a try-lock on its stream, and an event waits while an
earlier event for the same payout is still unapplied.
"""

from __future__ import annotations

from functools import partial

from periodya.domain import payout
from periodya.domain.decision import Decision
from periodya.domain.errors import DomainError
from periodya.domain.events import ProviderEventApplied
from periodya.eventstore import StreamAppend
from periodya.eventstore.store import stream_lock
from periodya.handlers import lifecycle
from periodya.handlers.unit_of_work import UnitOfWork
from periodya.projections.provider_events import stream as event_stream
from periodya.runners import faults
from periodya.runners.base import Deps, Summary, claim_and_run

BATCH = 200
PAID_TYPES = {"payout.paid"}
FAILED_TYPES = {"payout.failed", "payout.canceled"}


def _steps(kind: str, status: str | None, provider_payout_id: str, event_id: str) -> list[lifecycle.Step]:
    if kind in PAID_TYPES or (kind == "payout.updated" and status == "paid"):
        return [lambda s: payout.decide_provider_paid(s, provider_payout_id, "webhook", event_id),
                lambda s: payout.decide_finalize(s, "webhook") if s is not None and s.status == payout.PAID
                else Decision()]
    if kind in FAILED_TYPES or (kind == "payout.updated" and status in ("failed", "canceled")):
        return [lambda s: payout.decide_provider_failed(s, provider_payout_id, "webhook", provider_event_id=event_id)]
    return []


async def _apply(uow: UnitOfWork, *, event_id: str) -> str:
    return await apply_event(uow, event_id)


async def apply_event(uow: UnitOfWork, event_id: str) -> str:
    row = await uow.conn.fetchrow("SELECT * FROM provider_events WHERE event_id = $1", event_id)
    if row is None or row["applied_seq"] is not None:
        return "already_applied"
    pid = row["payout_id"] or await uow.conn.fetchval(
        "SELECT payout_id FROM payouts WHERE provider_payout_id = $1", row["provider_payout_id"])
    if pid is not None and await uow.conn.fetchval(
            "SELECT 1 FROM provider_events WHERE applied_seq IS NULL AND payout_id = $1 AND received_seq < $2",
            pid, row["received_seq"]):
        return "waiting_for_earlier"
    state = await uow.load_payout(pid) if pid is not None else None
    outcome, decision = "no_action", Decision()
    if state is None:
        outcome = "unknown_payout"
    else:
        try:
            decision = lifecycle.chain(state, *_steps(row["type"], row["status"], row["provider_payout_id"], event_id))
            outcome = "applied" if decision.events else "no_change"
        except DomainError as exc:
            outcome = f"ignored: {exc}"[:300]
    await faults.checkpoint("before_webhook_apply", event_id)
    mark = StreamAppend(event_stream(event_id), 1, [uow.new_event(ProviderEventApplied(outcome=outcome))])
    await uow.commit(payout.stream(pid) if pid else event_stream(event_id), state.version if state else 1,
                     decision, also=[mark])
    return outcome.split(":")[0]


async def run(deps: Deps, batch: int = BATCH) -> Summary:
    summary = Summary("webhooks")
    rows = await deps.store.pool.fetch(
        "SELECT event_id FROM provider_events WHERE applied_seq IS NULL ORDER BY received_seq LIMIT $1", batch)
    for row in rows:
        eid = row["event_id"]
        outcome = await claim_and_run(deps, "webhooks", [stream_lock(event_stream(eid))],
                                      partial(_apply, event_id=eid))
        summary.record(outcome, ok={"applied", "no_change", "no_action"},
                       skip={"already_applied", "waiting_for_earlier"})
    return summary
