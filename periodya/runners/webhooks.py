"""The webhooks job (batch 200): apply stored provider events in the order they arrived.

paid -> PAID and the ledger finalized (in-flight -> cash) in the same commit; failed/canceled ->
FAILED with funds back (a compensating group if it had been finalized). Each event is marked applied
(ProviderEventApplied) in the same transaction as its effects, so it is applied exactly once even when
two runs overlap: each event is claimed with a try-lock on its stream, and an event waits while an
earlier event for the same payout is still unapplied.

A run applies its whole batch in ONE transaction (apply_batch): try-lock every listed event's stream
in one round trip (events another run holds are skipped), drop the already applied ones and those
waiting for an earlier event that is not in this batch, lock the payouts' streams (one sorted call),
fold them with one read, decide every event in arrival order on the state the previous ones left, and
commit all payouts' events, ledger groups and applied-marks in one append: each account (cash:platform
among them) is locked once per batch, not once per payout. A batch that cannot commit (a version
conflict or a domain refusal at commit) wrote nothing; its events are then applied one per transaction,
each as a batch of one (apply_event): one path, one rule (settlement.settle) for both.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from periodya.deps import Deps
from periodya.domain import payout
from periodya.domain.decision import Decision
from periodya.domain.errors import DomainError
from periodya.domain.events import Event, ProviderEventApplied
from periodya.domain.ledger import LedgerGroup
from periodya.domain.settlement import ProviderOutcome, Record, Refused, settle
from periodya.errors import ConcurrencyConflict
from periodya.eventstore import StreamAppend
from periodya.eventstore.store import stream_lock
from periodya.handlers import lifecycle
from periodya.handlers.unit_of_work import Meta, UnitOfWork, run_command
from periodya.projections.provider_events import stream as event_stream
from periodya.runners import faults
from periodya.runners.base import Summary, claim_and_run, log

BATCH = 200
_META = Meta(actor="runner:webhooks")
FAILED_TYPES = {"payout.failed": "failed", "payout.canceled": "canceled"}


def _said(kind: str, status: str | None) -> str:
    """The provider's status word in one stored event (settlement.settle decides what it records)."""
    if kind == "payout.paid":
        return "paid"
    if kind in FAILED_TYPES:
        return FAILED_TYPES[kind]
    return status if kind == "payout.updated" and status is not None else f"event {kind}"


def _decide(state: payout.PayoutState | None, row: Any, event_id: str
            ) -> tuple[Decision, payout.PayoutState | None, str]:
    """What one stored provider event (`row`: its type, status and provider payout id) does to its
    payout: (decision, state after it, outcome), by settlement.settle."""
    if row["type"] == "unprocessable":  # a signed event the intake could not read: flagged there, acts on nothing
        return Decision(), state, "unprocessable"
    if state is None:
        return Decision(), None, "unknown_payout"
    said = ProviderOutcome(_said(row["type"], row["status"]), row["provider_payout_id"], "webhook", event_id)
    match settle(state, said):
        case Record(decision, after):
            return decision, after, "applied"
        case Refused(error):
            return Decision(), state, f"ignored: {error}"[:300]
    return Decision(), state, "no_change"


async def apply_event(uow: UnitOfWork, event_id: str) -> str | None:
    """Apply one stored provider event: a batch of one (apply_batch)."""
    return (await apply_batch(uow, [event_id]))[0]


# One primary-key probe per event id, whatever the table's statistics (projections/rows.fetch_by_keys).
SELECT_HELD = (
    "SELECT e.event_id, e.type, e.status, e.provider_payout_id, e.received_seq, e.applied_seq, "
    "coalesce(e.payout_id, (SELECT p.payout_id FROM payouts p WHERE p.provider_payout_id = e.provider_payout_id "
    "LIMIT 1)) AS pid FROM (SELECT DISTINCT unnest($1::text[])) AS k(id) "
    "CROSS JOIN LATERAL (SELECT * FROM provider_events WHERE event_id = k.id LIMIT 1) AS e ORDER BY e.received_seq")
PENDING = "SELECT event_id FROM provider_events WHERE applied_seq IS NULL ORDER BY received_seq LIMIT $1"
SELECT_UNAPPLIED = ("SELECT payout_id, event_id, received_seq FROM provider_events "
                     "WHERE applied_seq IS NULL AND payout_id = ANY($1::text[]) ORDER BY received_seq")


async def apply_batch(uow: UnitOfWork, event_ids: list[str]) -> list[str | None]:
    """Apply the stored provider events `event_ids` in one transaction; one outcome per id, in order:
    None (another run holds it), "already_applied", "waiting_for_earlier", "unprocessable",
    "unknown_payout", "applied", "no_change" or "ignored" (the provider's word was refused).

    Per payout, events are decided in arrival order, each on the state the previous ones produced, and
    an event is applied only if every earlier unapplied event of its payout is applied before it in this
    same batch (the one-by-one rule, applied to the batch)."""
    held = await uow.try_lock_each(stream_lock(event_stream(e)) for e in event_ids)
    mine = [e for e in event_ids if stream_lock(event_stream(e)) in held]
    outcomes: dict[str, str | None] = dict.fromkeys(event_ids)
    rows = await uow.conn.fetch(SELECT_HELD, mine) if mine else []
    pending = []
    for row in rows:
        if row["applied_seq"] is not None:
            outcomes[row["event_id"]] = "already_applied"
        else:
            pending.append(row)
    found = {r["event_id"] for r in rows}
    for eid in mine:  # listed, locked, but gone: nothing to apply
        if eid not in found:
            outcomes[eid] = "already_applied"
    pids = sorted({r["pid"] for r in pending if r["pid"] is not None})
    unapplied: dict[str, list[tuple[int, str]]] = {}
    for u in (await uow.conn.fetch(SELECT_UNAPPLIED, pids) if pids else []):
        unapplied.setdefault(u["payout_id"], []).append((u["received_seq"], u["event_id"]))
    done: set[str] = set()  # applied earlier in this batch
    ready = []
    for row in pending:
        pid = row["pid"]
        if pid is not None and any(seq < row["received_seq"] and eid not in done
                                   for seq, eid in unapplied.get(pid, ())):
            outcomes[row["event_id"]] = "waiting_for_earlier"
            continue
        done.add(row["event_id"])
        ready.append(row)
    if not ready:
        return [outcomes[e] for e in event_ids]
    ready_pids = sorted({r["pid"] for r in ready if r["pid"] is not None})
    await lifecycle.lock_payouts(uow, ready_pids)
    states = await lifecycle.load_many(uow, ready_pids)
    versions = {pid: s.version for pid, s in states.items() if s is not None}
    events: dict[str, list[Event]] = {}
    groups: dict[str, list[LedgerGroup]] = {}
    marks: list[StreamAppend] = []
    for row in ready:
        eid, pid = row["event_id"], row["pid"]
        state = states.get(pid) if pid is not None else None
        decision, after, outcome = _decide(state, row, eid)
        if state is not None:
            states[pid] = after
            events.setdefault(pid, []).extend(decision.events)
            groups.setdefault(pid, []).extend(decision.groups)
        await faults.checkpoint("before_webhook_apply", eid)
        marks.append(StreamAppend(event_stream(eid), 1, [uow.new_event(ProviderEventApplied(outcome=outcome))]))
        outcomes[eid] = outcome.split(":")[0]
    decisions = {pid: (versions[pid], Decision(tuple(evs), tuple(groups[pid]))) for pid, evs in events.items()}
    await lifecycle.commit_many(uow, decisions, also=marks)
    return [outcomes[e] for e in event_ids]


def _count(summary: Summary, outcome: str | None) -> None:
    summary.record(outcome, ok={"applied", "no_change", "no_action"}, skip={"already_applied", "waiting_for_earlier"})


async def run(deps: Deps, batch: int = BATCH) -> Summary:
    summary = Summary("webhooks")
    rows = await deps.store.pool.fetch(PENDING, batch)
    ids = [row["event_id"] for row in rows]
    if not ids:
        return summary
    try:
        outcomes = await run_command(deps.store, _META, partial(apply_batch, event_ids=ids), attempts=2)
    except (DomainError, ConcurrencyConflict) as exc:
        log.warning("batch_apply_conflict", job="webhooks", reason=str(exc), items=len(ids))
        outcomes = [await claim_and_run(deps, "webhooks", [stream_lock(event_stream(eid))],
                                        partial(apply_event, event_id=eid)) for eid in ids]
    for outcome in outcomes:
        _count(summary, outcome)
    return summary
