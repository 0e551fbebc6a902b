"""One command, one transaction: lock, load, decide, append events, apply projections inline.

Lock order (deadlock freedom): a command first locks its single aggregate stream (and, for
idempotent HTTP commands, its idempotency key before that), then, after reading the state it needs to
name them, every ledger account it will post to, sorted; last, in `record`, the streams of the open
stuck alerts its events may heal (handlers.alerts.lock_stuck_alerts). Nobody ever holds an account lock
while waiting for a payout stream lock, nor an alert stream lock while waiting for any lock, so no cycle
can form. All locks come before the first write (the transaction's xid: DESIGN.md, lock before you write).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from periodya.domain import accounts, escrow, payout
from periodya.domain.decision import Decision, posted
from periodya.domain.errors import OverdraftRefused
from periodya.domain.events import Event
from periodya.errors import ConcurrencyConflict
from periodya.event_registry import REGISTRY
from periodya.eventstore import NO_STREAM, EventStore, NewEvent, RecordedEvent, StreamAppend
from periodya.eventstore.hashing import lock_key
from periodya.eventstore.store import stream_lock
from periodya.projections import apply_all

T = TypeVar("T")

MAX_ATTEMPTS = 5
_PAYOUT_PREFIX = payout.stream("")
HEALING_TYPES = frozenset({"PayoutSent", "PayoutSendFailed", "PayoutSendAbandoned", "PayoutRequeued",
                           "PayoutProviderPaid", "PayoutProviderFailed", "PayoutFinalized", "PayoutQuarantined",
                           "PayoutCancelled"})
"""Payout events that can take a payout out of SENT or its outbox task out of SENDING (the conditions of
SENT_STUCK and OUTBOX_STUCK); the events that enter them (requested, send started) are not among them."""


@dataclass(frozen=True)
class Meta:
    """Who asked and why: copied into every event's metadata."""

    actor: str
    request_id: str | None = None
    reason: str | None = None
    causation_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"actor": self.actor, **self.extra}
        for key, value in (("requestId", self.request_id), ("reason", self.reason),
                           ("causationId", self.causation_id)):
            if value is not None:
                out[key] = value
        return out


async def project(conn: asyncpg.Connection, recorded: Sequence[RecordedEvent]) -> None:
    """Apply every projection to `recorded`, inline in the appending transaction. The no_overdraft CHECK
    is a backstop: a decide step checks balances under the account locks, so hitting it is a bug guard,
    answered as OverdraftRefused (409) rather than a database error."""
    try:
        await apply_all(conn, recorded)
    except asyncpg.CheckViolationError as exc:
        if exc.constraint_name != "no_overdraft":
            raise
        raise OverdraftRefused(f"the database refused an overdraft: {exc.detail}") from None


class UnitOfWork:
    def __init__(self, store: EventStore, conn: asyncpg.Connection, meta: Meta) -> None:
        self.store, self.conn, self.meta = store, conn, meta
        self.recorded: list[RecordedEvent] = []
        self._held: set[str] = set()
        self.written = False
        self.healable: frozenset[str] = frozenset()
        """The alert stream locks taken before this transaction's first write (handlers.alerts
        lock_stuck_alerts): only those alerts may be resolved by it, see `record`."""

    async def lock(self, names: Iterable[str]) -> None:
        """Take the advisory locks on `names` not already held in this transaction (one round trip).

        Names locked in one call are taken in sorted key order; see the module docstring for why
        calls are made in the order stream first, then accounts."""
        wanted = set(names) - self._held
        if wanted:
            await self.store.lock(self.conn, wanted)
            self._held |= wanted

    async def try_lock(self, names: Iterable[str]) -> bool:
        """Like `lock`, but give up at once (False) if another transaction holds any of `names`.
        The runners' SKIP LOCKED: overlapping runs pass over each other's items instead of waiting."""
        wanted = set(names)
        for key in sorted({lock_key(n) for n in wanted}):
            if not await self.conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key):
                return False
        self._held |= wanted
        return True

    async def try_lock_each(self, names: Iterable[str]) -> set[str]:
        """Try-lock every name in ONE round trip and return the names now held; the others are held by
        another transaction (skip them, SKIP LOCKED style). A try-lock never waits, so the order does
        not matter for deadlock freedom."""
        by_key = {lock_key(n): n for n in names}
        if not by_key:
            return set()
        rows = await self.conn.fetch(
            "SELECT k FROM unnest($1::bigint[]) AS k WHERE pg_try_advisory_xact_lock(k)", list(by_key))
        got = {by_key[r["k"]] for r in rows}
        self._held |= got
        return got

    async def lock_accounts(self, pairs: Iterable[tuple[str, str]]) -> None:
        await self.lock(accounts.lock_name(a, c) for a, c in pairs)

    async def load_payout(self, payout_id: str) -> payout.PayoutState | None:
        """Lock and fold the payout's stream."""
        sid = payout.stream(payout_id)
        await self.lock([stream_lock(sid)])
        state: payout.PayoutState | None = None
        for ev in await self.store.read_stream(sid, conn=self.conn):
            state = payout.evolve(state, REGISTRY.decode(ev))
        return state

    async def load_escrow(self, escrow_id: str) -> escrow.EscrowState | None:
        sid = escrow.stream(escrow_id)
        await self.lock([stream_lock(sid)])
        state: escrow.EscrowState | None = None
        for ev in await self.store.read_stream(sid, conn=self.conn):
            state = escrow.evolve(state, REGISTRY.decode(ev))
        return state

    def new_event(self, event: Event) -> NewEvent:
        """An event for an extra stream of this commit, carrying this command's metadata."""
        return REGISTRY.to_new(event, self.meta.as_metadata())

    async def commit(self, stream_id: str, expected_version: int, decision: Decision,
                     also: Sequence[StreamAppend] = ()) -> list[RecordedEvent]:
        """Append the decision's events and ledger groups (and `also`) atomically, then project them inline.

        The accounts of every group are locked (sorted) before the append's first write."""
        if decision.is_noop and not also:
            return []
        await self.lock_accounts(pair for g in decision.groups for pair in g.accounts())
        appends = decision_appends(stream_id, expected_version, decision, self.meta.as_metadata()) + list(also)
        return await self.record(appends)

    async def record(self, appends: Sequence[StreamAppend]) -> list[RecordedEvent]:
        """Append `appends` in this transaction and project them inline. Every account they post to must
        already be locked (lock_accounts), before this first write.

        A payout that moves on (HEALING_TYPES) closes its open SENT_STUCK/OUTBOX_STUCK alert in this same
        transaction. Lock before you write (DESIGN.md, The event store): the transaction gets its xid at
        its first write, so the alert streams it will resolve are looked up and locked HERE, before the
        append, if this is the transaction's first write; after it, only those alerts are resolved. An
        alert raised meanwhile, or whose payout is healed by a later record of the same transaction, is
        left open and auto-resolved by the sentinel's next run (its condition is gone)."""
        from periodya.handlers.alerts import lock_stuck_alerts, resolve_healed  # handlers.alerts imports us

        healing = healing_payouts(appends)
        if healing and not self.written:
            self.healable = await lock_stuck_alerts(self, healing)
        self.written = True
        recorded = await self.store.append(appends, conn=self.conn)
        await project(self.conn, recorded)
        self.recorded.extend(recorded)
        if healing and self.healable:
            await resolve_healed(self, healing)
        return recorded


def healing_payouts(appends: Sequence[StreamAppend]) -> list[str]:
    """The payouts (sorted ids) whose appends carry a HEALING_TYPES event."""
    return sorted({a.stream_id[len(_PAYOUT_PREFIX):] for a in appends if a.stream_id.startswith(_PAYOUT_PREFIX)
                   and any(e.type in HEALING_TYPES for e in a.events)})


def decision_appends(stream_id: str, expected_version: int, decision: Decision,
                     metadata: dict[str, Any]) -> list[StreamAppend]:
    """The appends that record `decision`: its events on `stream_id` (expected at `expected_version`,
    0 = a new stream) and each ledger group on its own `ledger-<group id>` stream (always new, so a
    group can be posted only once). The caller must hold the groups' account locks."""
    appends = [StreamAppend(f"ledger-{g.group_id}", NO_STREAM, [REGISTRY.to_new(posted(g, stream_id), metadata)])
               for g in decision.groups]
    if decision.events:
        appends.insert(0, StreamAppend(stream_id, expected_version or NO_STREAM,
                                       [REGISTRY.to_new(e, metadata) for e in decision.events]))
    return appends


async def run_command(store: EventStore, meta: Meta, body: Callable[[UnitOfWork], Awaitable[T]],
                      *, attempts: int = MAX_ATTEMPTS) -> T:
    """Run `body` in one transaction; on a version conflict, retry it from scratch (bounded).

    A conflict means another writer got there first; re-reading the state and deciding again is
    always safe because nothing of the failed attempt was written. After `attempts`, the conflict
    propagates (HTTP 409 CONCURRENCY_CONFLICT)."""
    for attempt in range(1, attempts + 1):
        try:
            async with store.pool.acquire() as conn, conn.transaction():
                uow = UnitOfWork(store, conn, meta)
                result = await body(uow)
            if uow.recorded:
                store.wake()
            return result
        except ConcurrencyConflict:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")
