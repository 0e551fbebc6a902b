"""The outbox job (batch 50): claim due PENDING tasks, record SENDING, call the provider, record SENT.

Claiming takes the payout stream's advisory lock with try-lock (the runners' SKIP LOCKED) and records
PayoutSendStarted in its own committed transaction BEFORE the provider is called: a run that loses
the race sees SENDING and never calls the provider. The provider's idempotency key is the payout id,
so whatever happens after the claim (crash, timeout, dropped connection) a resend cannot pay twice.

Failures: ProviderUnavailable (the payout may or may not exist) -> back to PENDING with exponential
backoff and jitter; past MAX_ATTEMPTS the provider is asked whether it holds the payout: if yes it is
recorded SENT, if definitely not it is abandoned (FAILED, funds back). ProviderRejected (a 4xx: nothing
was made) -> abandoned at once. An idempotency mismatch -> quarantined for a human.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from periodya.domain import payout
from periodya.domain.alerts import WARNING
from periodya.eventstore.store import stream_lock
from periodya.handlers import alerts, lifecycle
from periodya.handlers.unit_of_work import Meta, UnitOfWork, run_command
from periodya.provider.port import (
    ProviderError,
    ProviderIdempotencyMismatch,
    ProviderPayout,
    ProviderRejected,
)
from periodya.runners import faults
from periodya.runners.base import Deps, Summary, claim_and_run
from periodya.runners.sentinel_checks import REMEDY

BATCH = 50
MAX_ATTEMPTS = 8
BASE_BACKOFF_S = 2.0
MAX_BACKOFF_S = 600.0
SEND_CONCURRENCY = 16
_UNKNOWN = object()
_rng = random.Random()


def backoff(attempt: int, rng: random.Random = _rng) -> timedelta:
    """Exponential backoff with full jitter: uniform in [base/2, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** max(0, attempt - 1))
    return timedelta(seconds=rng.uniform(min(BASE_BACKOFF_S / 2, ceiling), ceiling))


async def due_tasks(deps: Deps, batch: int) -> list[str]:
    rows = await deps.store.pool.fetch(
        "SELECT payout_id FROM outbox WHERE status = 'PENDING' AND (next_attempt_at IS NULL OR next_attempt_at <= $1) "
        "ORDER BY next_attempt_at NULLS FIRST, created_at LIMIT $2", deps.clock(), batch)
    return [r["payout_id"] for r in rows]


async def _claim(deps: Deps, payout_id: str) -> payout.PayoutState | None:
    claimed: list[payout.PayoutState] = []

    async def body(uow: UnitOfWork) -> str:
        claimed.append(await lifecycle.start_send(uow, payout_id, deps.clock()))
        return "claimed"

    outcome = await claim_and_run(deps, "outbox", [stream_lock(payout.stream(payout_id))], body)
    return claimed[0] if outcome == "claimed" else None


async def _record(deps: Deps, payout_id: str, step: lifecycle.Step) -> str:
    async def body(uow: UnitOfWork) -> str:
        await lifecycle.decide(uow, payout_id, step)
        return "ok"

    return await claim_and_run(deps, "outbox", [stream_lock(payout.stream(payout_id))], body) or "busy"


async def send_one(deps: Deps, state: payout.PayoutState) -> str:
    """Call the provider for a claimed (SENDING) payout and record what it said."""
    pid = state.payout_id
    try:
        accepted: ProviderPayout = await deps.provider.create_payout(pid, state.amount, state.currency,
                                                                    state.destination)
    except ProviderIdempotencyMismatch as exc:
        why = f"provider idempotency mismatch: {exc}"
        await _record(deps, pid, lambda s: payout.decide_quarantine(s, why))
        return "quarantined"
    except ProviderRejected as exc:
        refused = str(exc)
        await _record(deps, pid, lambda s: payout.decide_abandon(s, refused))
        await _alert_abandoned(deps, state, refused)
        return "rejected"
    except ProviderError as exc:
        return await _after_transient(deps, state, exc)
    await faults.checkpoint("after_provider_accept", accepted.id)
    await _record(deps, pid, lambda s: payout.decide_sent(s, accepted.id, "outbox"))
    return "sent"


async def _after_transient(deps: Deps, state: payout.PayoutState, exc: ProviderError) -> str:
    pid = state.payout_id
    if state.attempts >= MAX_ATTEMPTS:
        found: ProviderPayout | object | None
        try:
            found = await deps.provider.find_by_payout_id(pid)
        except ProviderError:
            found = _UNKNOWN  # the provider cannot say: keep retrying, never abandon on a guess
        if found is None:
            why = f"gave up after {state.attempts} attempts: {exc}"
            await _record(deps, pid, lambda s: payout.decide_abandon(s, why))
            await _alert_abandoned(deps, state, why)
            return "abandoned"
        if isinstance(found, ProviderPayout):
            accepted_id = found.id
            await _record(deps, pid, lambda s: payout.decide_sent(s, accepted_id, "outbox"))
            return "sent"
    retry_at = deps.clock() + backoff(state.attempts)
    await _record(deps, pid, lambda s: payout.decide_send_failed(s, f"{type(exc).__name__}: {exc}", retry_at))
    return "retry"


async def _alert_abandoned(deps: Deps, state: payout.PayoutState, why: str) -> None:
    details = {"payoutId": state.payout_id, "payeeId": state.payee_id, "amount": state.amount,
               "currency": state.currency, "error": why[:500]}
    await run_command(deps.store, Meta(actor="runner:outbox"), lambda u: alerts.raise_alert(
        u, "PAYOUT_SEND_ABANDONED", WARNING, state.payout_id, details, REMEDY["PAYOUT_SEND_ABANDONED"]))


async def run(deps: Deps, batch: int = BATCH) -> Summary:
    summary = Summary("outbox")
    claimed = [s for s in [await _claim(deps, pid) for pid in await due_tasks(deps, batch)] if s is not None]
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def guarded(state: payout.PayoutState) -> str:
        async with gate:
            return await send_one(deps, state)

    outcomes = await asyncio.gather(*(guarded(s) for s in claimed))
    for outcome in outcomes:
        summary.record(outcome, ok={"sent", "quarantined"}, neutral={"retry"})
    return summary
