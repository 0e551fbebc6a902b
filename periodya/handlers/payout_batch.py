"""Group commit for POST /api/payouts: payout requests that arrive together share one transaction.

One path: `request_payouts` is the only code that writes a payout request. A batch is a list of
requests; a request alone (one that reaches an idle server, one rerun after its batch failed,
platform.request_payout) is a batch of one through the same function, so nothing about WHAT is
written depends on how many requests share the transaction.

Why batches: a payout request alone is a dozen SQL round trips (begin, locks, reads, the append, one
statement per projection, the idempotency record, commit), and at high concurrency the per-statement
CPU of the API server and of PostgreSQL is the limit. While up to `max_running` batches are in flight,
new requests queue; the next batch takes every queued request (up to `max_batch`) and runs ONE lock
call, ONE read, ONE append, one set of projection statements and ONE idempotency insert for all of
them. The scheduling (queue, batches in flight, rerun one by one, cancellation, drain) is
periodya/handlers/commit_scheduler.py.

Why it is safe:
* Locks. Every idempotency key, every (freshly generated) payout stream and every payee account of
  the batch are taken in ONE sorted lock call before any read or write. Mixing streams with accounts
  in one sorted call is safe only because nobody else can hold a stream that did not exist a moment
  ago; idempotency keys are only ever taken first or in such a merged call. Every participant takes
  its account locks in ascending key order, so batches cannot deadlock each other or other commands.
* Reads after locks. Stored idempotency answers and balances are read by the statement after the lock
  call: a fresh READ COMMITTED snapshot that includes every earlier lock holder's commit.
* Money. Each request is decided by the domain's own `decide_request` against the payable balance
  read under the lock MINUS what earlier requests of the same batch already reserved from that account.
  A refused request adds nothing (it writes nothing) and gets its typed error; the `no_overdraft`
  CHECK stays the database's backstop.
* Idempotency. At most one request per key in a batch; another request with the same key waits for a
  later batch, which finds the first one's stored answer (or, if the first was refused, decides again).
  Answers are stored in the same transaction as the payouts they describe.
* All or nothing. A batch is one transaction. If it fails for any reason other than a per-request
  domain refusal (a conflict, the overdraft guard, a database error), nothing of it was written, and
  every request in it runs again ALONE, as a batch of one in its own transaction: one bad request
  never fails the others.
* Crash or cancellation. Before COMMIT nothing is visible and nobody got an answer; a request whose
  client went away may still be committed with its batch, and a retry with the same key returns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from periodya.domain import accounts, payout
from periodya.domain.accounts import lock_name
from periodya.domain.errors import DomainError
from periodya.eventstore import EventStore
from periodya.eventstore.store import stream_lock
from periodya.handlers import idempotency, views
from periodya.handlers.commit_scheduler import GroupCommit
from periodya.handlers.unit_of_work import Meta, UnitOfWork, decision_appends, run_command

SCOPE = "POST /api/payouts"
MAX_BATCH = 64
# Batch transactions in flight at once. Two keep both the event loop and PostgreSQL busy (one batch is
# being decided in Python while the other's statements run); more make smaller batches, so more
# statements per payout (measured with `python -m bench commands` on 2 cores: CPU per payout 0.9 ms with
# 2, 1.1 ms with 4, 1.6 ms with 8), and more batches contend for one hot payee's account lock.
MAX_RUNNING = 2
Answer = tuple[int, dict[str, Any]]

# One primary-key probe per distinct key (the LIMIT keeps each lateral subquery from being flattened into a join):
# a join to unnest() is planned as a hash join over a sequential scan while a new database's tables are
# small, and the prepared statement keeps that plan as they grow (projections/rows.fetch_by_keys).
READ_STORED = """
SELECT u.k AS key, i.request_hash, i.status, i.response, NULL::text AS account, NULL::text AS currency,
       NULL::bigint AS balance
  FROM (SELECT DISTINCT unnest($2::text[])) AS u(k)
  CROSS JOIN LATERAL (SELECT request_hash, status, response FROM idempotency_keys
                       WHERE scope = $1 AND key = u.k LIMIT 1) AS i
UNION ALL
SELECT NULL, NULL, NULL, NULL, u.a, u.c, b.balance
  FROM (SELECT DISTINCT * FROM unnest($3::text[], $4::text[])) AS u(a, c)
  CROSS JOIN LATERAL (SELECT balance FROM balances WHERE account = u.a AND currency = u.c LIMIT 1) AS b"""


@dataclass(frozen=True)
class PayoutRequest:
    """One payout request: the command (its payout id freshly generated by the caller), who asked, and,
    for POST /api/payouts, its Idempotency-Key with the request body as received and that body's hash."""

    cmd: payout.RequestPayout
    meta: Meta
    key: str | None = None
    raw: Any = None
    digest: str = ""


async def request_payouts(uow: UnitOfWork, batch: Sequence[PayoutRequest], *,
                          fresh: bool = True) -> list[Answer | DomainError]:
    """THE way a payout request is written, for a batch of any size (a request alone is a batch of one):
    one sorted lock call, one read of stored answers and balances, each request decided in turn, one
    append with its projections, one idempotency insert. Returns one outcome per request, in order: its
    (HTTP status, body), or the DomainError that refused it (it wrote nothing). Anything else raises and,
    the transaction being the caller's, nothing of the batch is written.

    `fresh` (POST /api/payouts: the ids were generated just now) takes every lock in ONE sorted call (see
    the module docstring, Locks) and reads no payout state: an id whose stream exists after all is refused
    by the append's NO_STREAM expectation (ConcurrencyConflict), which fails the whole batch. Otherwise
    (a caller-chosen id) the streams are locked and folded first and the accounts locked after, the order
    of unit_of_work, and a used id is refused by decide_request (InvalidState). Only how the locks are
    taken differs: the decision and what is written are the same. At most one request per Idempotency-Key
    (the scheduler's `key`)."""
    keyed = [r.key for r in batch if r.key is not None]
    lead = {idempotency.lock_name(SCOPE, k) for k in keyed} | {stream_lock(payout.stream(r.cmd.payout_id))
                                                              for r in batch}
    then = {lock_name(a, r.cmd.currency) for r in batch for a in payee_accounts(r.cmd)}
    locks = lead | then
    payables = sorted({(accounts.payable(r.cmd.payee_id), r.cmd.currency) for r in batch})
    states: dict[str, payout.PayoutState | None] = {}
    if fresh:
        await uow.lock(locks)
    else:
        await uow.lock(lead)
        states = {r.cmd.payout_id: await uow.load_payout(r.cmd.payout_id) for r in batch}
        await uow.lock(then)
    rows = await uow.conn.fetch(READ_STORED, SCOPE, keyed, [a for a, _ in payables], [c for _, c in payables])
    stored = {row["key"]: (row["request_hash"], row["status"], row["response"])
              for row in rows if row["key"] is not None}
    available = {(row["account"], row["currency"]): int(row["balance"]) for row in rows if row["key"] is None}
    outcomes: list[Answer | DomainError | None] = [None] * len(batch)
    appends, accepted = [], []
    for i, r in enumerate(batch):
        try:
            if r.key is not None and r.key in stored:
                answer = idempotency.check(stored[r.key], r.key, r.digest)
                outcomes[i] = (answer.status, answer.body)
                continue
            payable = (accounts.payable(r.cmd.payee_id), r.cmd.currency)
            decision = payout.decide_request(states.get(r.cmd.payout_id), r.cmd, available.get(payable, 0))
        except DomainError as exc:
            outcomes[i] = exc  # refused: adds nothing to the batch
            continue
        touched = {lock_name(a, c) for g in decision.groups for a, c in g.accounts()}
        if not touched <= locks:  # decide_request posts to the payee's accounts only; a guard
            raise AssertionError(f"payout {r.cmd.payout_id} posts to unlocked accounts {touched - locks}")
        available[payable] = available.get(payable, 0) - r.cmd.amount
        appends += decision_appends(payout.stream(r.cmd.payout_id), 0, decision, r.meta.as_metadata())
        accepted.append(i)
    if accepted:
        recorded = await uow.record(appends)
        first = {ev.stream_id: ev for ev in recorded if ev.stream_version == 1}
        answers = []
        for i in accepted:
            r = batch[i]
            outcomes[i] = created = (201, views.new_payout_view(first[payout.stream(r.cmd.payout_id)]))
            if r.key is not None:
                answers.append((r.key, r.digest, idempotency.StoredResponse(*created)))
        await idempotency.remember_many(uow.conn, SCOPE, answers)
    assert all(o is not None for o in outcomes)
    return outcomes  # type: ignore[return-value]


def payee_accounts(cmd: payout.RequestPayout) -> tuple[str, str]:
    """The accounts a payout request posts to: the payee's payable (debited) and in-flight (credited)."""
    return accounts.payable(cmd.payee_id), accounts.inflight(cmd.payee_id)


class PayoutBatcher:
    """Runs POST /api/payouts requests in batches (see the module docstring). One per app, on its event
    loop. The scheduling (queue, batches in flight, rerun one by one, cancellation, drain) is
    commit_scheduler's; every batch, and every request rerun alone, is `request_payouts`."""

    def __init__(self, store: EventStore, *, max_batch: int = MAX_BATCH, max_running: int = MAX_RUNNING) -> None:
        self.store = store
        self._group: GroupCommit[PayoutRequest, Answer] = GroupCommit(
            self._commit, key=lambda r: r.key, max_batch=max_batch, max_running=max_running,
            name="payout", label=lambda r: r.meta.request_id)
        self.max_batch, self.max_running = max_batch, max_running

    async def request(self, cmd: payout.RequestPayout, meta: Meta, key: str, raw: Any) -> Answer:
        """Request a payout under an Idempotency-Key (the payout id is freshly generated by the caller).
        Returns (HTTP status, body) or raises the typed error that refused it."""
        return await self._group.submit(PayoutRequest(cmd, meta, key, raw, idempotency.request_hash(SCOPE, raw)))

    async def drain(self) -> None:
        """Wait for every batch in flight (and the ones they start) to finish."""
        await self._group.drain()

    async def _commit(self, batch: list[PayoutRequest]) -> list[Answer | DomainError]:
        """One transaction for the batch (no retry here: a batch that fails is rerun request by request)."""
        return await run_command(self.store, batch[0].meta, lambda uow: request_payouts(uow, batch), attempts=1)
