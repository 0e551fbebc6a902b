"""Payout lifecycle commands used by the runners and the operator's actions.

Each runs in one unit of work: lock the payout stream, fold it, decide (possibly several steps in
a row), and commit with the expected version. What the provider's word records (paid -> finalize,
failed -> reverse) is not decided here but by domain/settlement.settle. Losing a race shows
up as a version conflict (retried from scratch by run_command) or as an InvalidState on re-decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from periodya.domain import payout
from periodya.domain.decision import Decision
from periodya.domain.errors import NotFound
from periodya.domain.events import Event
from periodya.domain.ledger import LedgerGroup
from periodya.domain.payout import PayoutState
from periodya.event_registry import REGISTRY
from periodya.eventstore import RecordedEvent, StreamAppend
from periodya.eventstore.store import stream_lock
from periodya.handlers.unit_of_work import UnitOfWork, decision_appends

Step = Callable[[PayoutState | None], Decision]


def chain(state: PayoutState | None, *steps: Step) -> Decision:
    """Run decide steps one after another, each on the state the previous one's events produce."""
    return chain_state(state, *steps)[0]


def chain_state(state: PayoutState | None, *steps: Step) -> tuple[Decision, PayoutState | None]:
    """`chain`, also returning the state after the decision's events (a batch decides the next item of
    the same payout on it without folding the events again)."""
    events: list[Event] = []
    groups: list[LedgerGroup] = []
    for step in steps:
        decision = step(state)
        for ev in decision.events:
            state = payout.evolve(state, ev)
        events.extend(decision.events)
        groups.extend(decision.groups)
    return Decision(tuple(events), tuple(groups)), state


async def decide(uow: UnitOfWork, payout_id: str, *steps: Step) -> PayoutState:
    """Load, decide with `steps`, commit. Returns the state after the new events."""
    state = await uow.load_payout(payout_id)
    if state is None:
        raise NotFound(f"no payout {payout_id!r}")
    decision = chain(state, *steps)
    await uow.commit(payout.stream(payout_id), state.version, decision)
    for ev in decision.events:
        state = payout.evolve(state, ev)
    assert state is not None
    return state


async def start_send(uow: UnitOfWork, payout_id: str, now: datetime) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_start_send(s, now))


async def requeue(uow: UnitOfWork, payout_id: str, reason: str) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_requeue(s, reason))


async def quarantine(uow: UnitOfWork, payout_id: str, reason: str) -> PayoutState:
    return await decide(uow, payout_id, lambda s: payout.decide_quarantine(s, reason))


# --- batch variants (the runners: many payouts in one unit of work) ----------------------------------


async def lock_payouts(uow: UnitOfWork, payout_ids: Iterable[str]) -> None:
    """Lock many payout streams in one call, in sorted key order (waiting). Call it once per transaction,
    before any account lock: two batches locking overlapping sets both go in key order, so no cycle."""
    await uow.lock(stream_lock(payout.stream(p)) for p in payout_ids)


async def load_many(uow: UnitOfWork, payout_ids: Iterable[str]) -> dict[str, PayoutState | None]:
    """Fold many payout streams with one read. The caller holds their stream locks (lock_payouts or
    UnitOfWork.try_lock_each) so the states cannot change before the commit."""
    ids = list(dict.fromkeys(payout_ids))
    states: dict[str, PayoutState | None] = dict.fromkeys(ids)
    if not ids:
        return states
    prefix = len(payout.stream(""))
    for ev in await uow.store.read_streams([payout.stream(p) for p in ids], conn=uow.conn):
        pid = ev.stream_id[prefix:]
        states[pid] = payout.evolve(states[pid], REGISTRY.decode(ev))
    return states


async def commit_many(uow: UnitOfWork, decisions: Mapping[str, tuple[int, Decision]],
                      also: Sequence[StreamAppend] = ()) -> list[RecordedEvent]:
    """Commit the decisions of many payouts ({payout id: (expected version, decision)}) and `also` in ONE
    append and one projection apply: all or nothing (a version conflict raises ConcurrencyConflict and
    writes nothing). The payout streams must already be locked (lock order: streams, then accounts);
    the accounts of every group are locked here, sorted, once each, before the append's first write."""
    decisions = {pid: vd for pid, vd in decisions.items() if not vd[1].is_noop}
    if not decisions and not also:
        return []
    await uow.lock_accounts(pair for _v, d in decisions.values() for g in d.groups for pair in g.accounts())
    meta = uow.meta.as_metadata()
    appends = [a for pid, (version, decision) in decisions.items()
               for a in decision_appends(payout.stream(pid), version, decision, meta)]
    return await uow.record(appends + list(also))
