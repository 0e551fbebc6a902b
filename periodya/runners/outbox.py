"""The outbox job (batch 50): claim due PENDING tasks, record SENDING, call the provider, record SENT.

A run is three steps over the whole batch: (1) claim: try-lock every listed payout's stream in one
round trip (the runners' SKIP LOCKED: a payout another run holds is skipped), fold them with one read
and record PayoutSendStarted for all of them in ONE append, committed BEFORE any provider call: a run
that loses the race sees SENDING (or cannot take the lock) and never calls the provider; (2) call the
provider for the claimed payouts, SEND_CONCURRENCY at a time; (3) record every answer (SENT, retry,
abandon, quarantine) in ONE transaction. The provider's idempotency key is the payout id, so whatever
happens after the claim (crash before step 3, timeout, dropped connection) a resend cannot pay twice:
a payout left SENDING is resolved by repair. A batch that cannot commit (a version conflict, or a
domain refusal at commit) wrote nothing and runs again payout by payout, each a batch of one through
the same claim or record: one path per write, whatever the batch's size.

Failures: ProviderUnavailable (the payout may or may not exist) -> back to PENDING with exponential
backoff and jitter; past MAX_ATTEMPTS the provider is asked whether it holds the payout: if yes it is
recorded SENT, if definitely not it is abandoned (FAILED, funds back). ProviderRejected (a 4xx: nothing
was made) -> abandoned at once. An idempotency mismatch -> quarantined for a human.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from periodya.deps import Deps
from periodya.domain import payout
from periodya.domain.alerts import WARNING
from periodya.domain.decision import Decision
from periodya.domain.errors import DomainError
from periodya.errors import ConcurrencyConflict
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
from periodya.runners.base import Summary, log
from periodya.runners.sentinel_checks import REMEDY

BATCH = 50
MAX_ATTEMPTS = 8
BASE_BACKOFF_S = 2.0
MAX_BACKOFF_S = 600.0
SEND_CONCURRENCY = 16
_UNKNOWN = object()
_META = Meta(actor="runner:outbox")
_rng = random.Random()
T = TypeVar("T")
R = TypeVar("R")


def backoff(attempt: int, rng: random.Random = _rng) -> timedelta:
    """Exponential backoff with full jitter: uniform in [base/2, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** max(0, attempt - 1))
    return timedelta(seconds=rng.uniform(min(BASE_BACKOFF_S / 2, ceiling), ceiling))


DUE = ("SELECT payout_id FROM outbox WHERE status = 'PENDING' AND (next_attempt_at IS NULL OR next_attempt_at <= $1) "
       "ORDER BY next_attempt_at NULLS FIRST, created_at LIMIT $2")


async def due_tasks(deps: Deps, batch: int) -> list[str]:
    rows = await deps.store.pool.fetch(DUE, deps.clock(), batch)
    return [r["payout_id"] for r in rows]


def _decide_each(states: Mapping[str, payout.PayoutState | None], steps: list[tuple[str, lifecycle.Step]]
                 ) -> tuple[dict[str, tuple[int, Decision]], list[payout.PayoutState]]:
    """Decide each (payout id, step) on its folded state: {id: (expected version, decision)} for
    commit_many, and the states after. A payout the step no longer applies to (sent meanwhile, backoff
    not over, quarantined, paid by a webhook) is left as it is and logged, as the one-by-one path does."""
    decisions: dict[str, tuple[int, Decision]] = {}
    after: list[payout.PayoutState] = []
    for pid, step in steps:
        state = states[pid]
        try:
            decision, new_state = lifecycle.chain_state(state, step)
        except DomainError as exc:
            log.info("item_not_applicable", job="outbox", item=pid, reason=str(exc))
            continue
        if state is not None and new_state is not None:
            decisions[pid] = (state.version, decision)
            after.append(new_state)
    return decisions, after


async def claim_batch(deps: Deps, payout_ids: list[str]) -> list[payout.PayoutState]:
    """Record PayoutSendStarted for every claimable payout of `payout_ids` in ONE committed transaction,
    before any provider call (`_claim`); should it fail to commit, each payout is claimed as a batch of
    one (see `_batch_or_each`). Returns the claimed payouts' states (SENDING)."""
    return await _batch_or_each("claim", payout_ids, lambda ids: _claim(deps, ids, deps.clock()), str)


async def _claim(deps: Deps, payout_ids: list[str], now: datetime) -> list[payout.PayoutState]:
    """The one claim, for any number of payouts: try-lock all their streams in one round trip (a payout
    another run holds is skipped), fold them with one read, decide, one append. A payout no longer
    claimable (sent meanwhile, backoff not over, quarantined) is skipped."""
    claimed: list[payout.PayoutState] = []

    async def body(uow: UnitOfWork) -> None:
        claimed.clear()
        held = await uow.try_lock_each(stream_lock(payout.stream(p)) for p in payout_ids)
        mine = [p for p in payout_ids if stream_lock(payout.stream(p)) in held]
        states = await lifecycle.load_many(uow, mine)
        decisions, after = _decide_each(states, [(pid, lambda s: payout.decide_start_send(s, now)) for pid in mine])
        claimed.extend(after)
        await lifecycle.commit_many(uow, decisions)

    await run_command(deps.store, _META, body, attempts=2)
    return list(claimed)


async def _batch_or_each(step: str, items: list[T], run: Callable[[list[T]], Awaitable[list[R]]],
                         label: Callable[[T], str]) -> list[R]:
    """`run(items)`: one transaction for them all. If it cannot commit (a version conflict, a guard while
    the locks are held; or a domain refusal at commit), nothing of it was written, and each item runs
    again as a batch of one through the same `run`, so one bad item never holds back the others; an item
    that fails alone too is logged and left as it is (repair and the next runs see it)."""
    if not items:
        return []
    try:
        return await run(items)
    except (DomainError, ConcurrencyConflict) as exc:
        log.warning(f"batch_{step}_conflict", job="outbox", reason=str(exc), items=len(items))
    done: list[R] = []
    for item in items:
        try:
            done += await run([item])
        except (DomainError, ConcurrencyConflict) as exc:
            log.info("item_not_applicable", job="outbox", item=label(item), reason=str(exc))
    return done


@dataclass
class Answer:
    """What the provider said for one claimed payout: the outcome word, the step that records it, and
    the reason for an alert when the payout was abandoned."""

    state: payout.PayoutState
    outcome: str
    step: lifecycle.Step
    alert: str | None = None


async def call_provider(deps: Deps, state: payout.PayoutState) -> Answer:
    """Call the provider for a claimed (SENDING) payout; nothing is recorded here (see record_batch)."""
    pid = state.payout_id
    try:
        accepted: ProviderPayout = await deps.provider.create_payout(pid, state.amount, state.currency,
                                                                    state.destination)
    except ProviderIdempotencyMismatch as exc:
        why = f"provider idempotency mismatch: {exc}"
        return Answer(state, "quarantined", lambda s: payout.decide_quarantine(s, why))
    except ProviderRejected as exc:
        refused = str(exc)
        return Answer(state, "rejected", lambda s: payout.decide_abandon(s, refused), refused)
    except ProviderError as exc:
        return await _after_transient(deps, state, exc)
    await faults.checkpoint("after_provider_accept", accepted.id)
    return Answer(state, "sent", lambda s: payout.decide_sent(s, accepted.id, "outbox"))


async def record_batch(deps: Deps, answers: list[Answer]) -> None:
    """Record every answer in ONE transaction (`_record`); should it fail to commit, each answer is
    recorded as a batch of one (see `_batch_or_each`). A crash before this commit leaves the payouts
    SENDING: repair resends them with the same idempotency key, so the provider still holds exactly one
    payout each."""
    await _batch_or_each("record", answers, lambda batch: _record(deps, batch), lambda a: a.state.payout_id)


async def _record(deps: Deps, answers: list[Answer]) -> list[None]:
    """The one record, for any number of answers: lock the payouts' streams (waiting, one sorted call),
    fold them with one read, decide each, one append. A payout whose record no longer applies (e.g. a
    webhook already recorded it paid, or an operator quarantined it) is left as it is."""

    async def body(uow: UnitOfWork) -> None:
        ids = [a.state.payout_id for a in answers]
        await lifecycle.lock_payouts(uow, ids)
        states = await lifecycle.load_many(uow, ids)
        decisions, _after = _decide_each(states, [(a.state.payout_id, a.step) for a in answers])
        await lifecycle.commit_many(uow, decisions)

    await run_command(deps.store, _META, body, attempts=2)
    return [None] * len(answers)


async def _after_transient(deps: Deps, state: payout.PayoutState, exc: ProviderError) -> Answer:
    pid = state.payout_id
    if state.attempts >= MAX_ATTEMPTS:
        found: ProviderPayout | object | None
        try:
            found = await deps.provider.find_by_payout_id(pid)
        except ProviderError:
            found = _UNKNOWN  # the provider cannot say: keep retrying, never abandon on a guess
        if found is None:
            why = f"gave up after {state.attempts} attempts: {exc}"
            return Answer(state, "abandoned", lambda s: payout.decide_abandon(s, why), why)
        if isinstance(found, ProviderPayout):
            accepted_id = found.id
            return Answer(state, "sent", lambda s: payout.decide_sent(s, accepted_id, "outbox"))
    retry_at = deps.clock() + backoff(state.attempts)
    error = f"{type(exc).__name__}: {exc}"
    return Answer(state, "retry", lambda s: payout.decide_send_failed(s, error, retry_at))


async def _alert_abandoned(deps: Deps, state: payout.PayoutState, why: str) -> None:
    details = {"payoutId": state.payout_id, "payeeId": state.payee_id, "amount": state.amount,
               "currency": state.currency, "error": why[:500]}
    await run_command(deps.store, Meta(actor="runner:outbox"), lambda u: alerts.raise_alert(
        u, "PAYOUT_SEND_ABANDONED", WARNING, state.payout_id, details, REMEDY["PAYOUT_SEND_ABANDONED"]))


async def send_batch(deps: Deps, claimed: list[payout.PayoutState]) -> list[Answer]:
    """Call the provider for every claimed payout, SEND_CONCURRENCY at a time (idempotency key = payout id)."""
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def guarded(state: payout.PayoutState) -> Answer:
        async with gate:
            return await call_provider(deps, state)

    return list(await asyncio.gather(*(guarded(s) for s in claimed)))


async def send_one(deps: Deps, state: payout.PayoutState) -> str:
    """Call the provider for one claimed (SENDING) payout and record what it said (a batch of one)."""
    answer = await call_provider(deps, state)
    await record_batch(deps, [answer])
    if answer.alert is not None:
        await _alert_abandoned(deps, state, answer.alert)
    return answer.outcome


async def run(deps: Deps, batch: int = BATCH) -> Summary:
    """Three steps, each one transaction for the whole batch except the provider calls: claim (SENDING
    committed), call the provider concurrently, record every answer. Alerts for abandoned payouts follow."""
    summary = Summary("outbox")
    claimed = await claim_batch(deps, await due_tasks(deps, batch))
    answers = await send_batch(deps, claimed)
    await record_batch(deps, answers)
    for answer in answers:
        if answer.alert is not None:
            await _alert_abandoned(deps, answer.state, answer.alert)
        summary.record(answer.outcome, ok={"sent", "quarantined"}, neutral={"retry"})
    return summary
