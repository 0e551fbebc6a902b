"""The repair job (batch 200): outbox tasks stuck in SENDING past PERIODYA_SENDING_STUCK_MINUTES.

A task stuck in SENDING means a runner died between claiming it and recording the provider's answer:
the provider may or may not hold the payout. Repair resends with the SAME idempotency key (the payout
id): the provider returns the payout it already made, or makes it now. Either way exactly one exists,
and repair records it SENT. Past the provider's idempotency window (a day at Stripe) a resend could
create a second payout, so an older task is looked up by metadata instead, and requeued only if the
provider definitely holds none. A transient provider error requeues the task for the outbox job.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from periodya.deps import Deps
from periodya.domain import payout
from periodya.eventstore.store import stream_lock
from periodya.handlers import lifecycle
from periodya.handlers.unit_of_work import UnitOfWork
from periodya.provider.port import ProviderError, ProviderIdempotencyMismatch, ProviderRejected
from periodya.runners.base import Summary, claim_and_run

BATCH = 200
IDEMPOTENCY_WINDOW = timedelta(hours=23)


async def repair_one(deps: Deps, uow: UnitOfWork, payout_id: str, *, sending_since: object = None) -> str | None:
    """Resolve one SENDING payout. Re-checked under the claim: a payout no longer SENDING (an
    overlapping run repaired it since this run listed it) is skipped (None), not processed."""
    state = await uow.load_payout(payout_id)
    if state is None or state.status != payout.SENDING:
        return None
    sid = payout.stream(payout_id)
    try:
        old = sending_since is not None and sending_since < deps.clock() - IDEMPOTENCY_WINDOW  # type: ignore[operator]
        found = (await deps.provider.find_by_payout_id(payout_id) if old else
                 await deps.provider.create_payout(payout_id, state.amount, state.currency, state.destination))
    except ProviderIdempotencyMismatch as exc:
        await uow.commit(sid, state.version, payout.decide_quarantine(state, f"provider idempotency mismatch: {exc}"))
        return "quarantined"
    except ProviderRejected as exc:
        await uow.commit(sid, state.version, payout.decide_abandon(state, str(exc)))
        return "rejected"
    except ProviderError as exc:
        await uow.commit(sid, state.version, payout.decide_requeue(state, f"repair: provider {type(exc).__name__}"))
        return "requeued"
    if found is None:
        await uow.commit(sid, state.version, payout.decide_requeue(state, "repair: provider holds no payout"))
        return "requeued"
    await uow.commit(sid, state.version, lifecycle.chain(state, lambda s: payout.decide_sent(s, found.id, "repair")))
    return "sent"


async def run(deps: Deps, batch: int = BATCH) -> Summary:
    """Oldest first; a batch claim gives its tasks one updated_at, so ties go by request time (created_at)."""
    summary = Summary("repair")
    rows = await deps.store.pool.fetch(
        "SELECT payout_id, updated_at FROM outbox WHERE status = 'SENDING' AND updated_at < $1 "
        "ORDER BY updated_at, created_at LIMIT $2", deps.minutes_ago(deps.settings.sending_stuck_minutes), batch)
    for row in rows:
        pid, since = row["payout_id"], row["updated_at"]
        outcome = await claim_and_run(deps, "repair", [stream_lock(payout.stream(pid))],
                                      partial(repair_one, deps, payout_id=pid, sending_since=since))
        summary.record(outcome, ok={"sent", "requeued", "quarantined"})
    return summary
