"""Group commit for POST /api/payouts: payout requests that arrive together share one transaction.

Why: a payout request alone is a dozen SQL round trips (begin, locks, reads, the append, one statement
per projection, the idempotency record, commit), and at high concurrency the per-statement CPU of the
API server and of PostgreSQL is the limit. While up to `max_running` batches are in flight, new
requests queue; the next batch takes every queued request (up to `max_batch`) and runs ONE lock call,
ONE read, ONE append, one set of projection statements and ONE idempotency insert for all of them.
A request that arrives at an idle server runs at once, as a batch of one. The scheduling (queue, batches
in flight, fallback to one by one, cancellation, drain) is periodya/handlers/group_commit.py.

Why it is safe:
* Locks. Every idempotency key, every (freshly generated) payout stream and every payee account of
  the batch are taken in ONE sorted lock call before any read or write: the shape of the single
  request path (platform.payout_request_locks with the idempotency key). Mixing streams with accounts
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
  every request in it runs again ALONE through the single-request path (`platform.execute`, with its
  bounded conflict retries): one bad request never fails the others.
* Crash or cancellation. Before COMMIT nothing is visible and nobody got an answer; a request whose
  client went away may still be committed with its batch, and a retry with the same key returns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from periodya.domain import accounts, payout
from periodya.domain.accounts import lock_name
from periodya.domain.errors import DomainError
from periodya.eventstore import EventStore
from periodya.handlers import idempotency, platform, views
from periodya.handlers.group_commit import GroupCommit
from periodya.handlers.unit_of_work import Meta, decision_appends, project

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
class _Request:
    cmd: payout.RequestPayout
    key: str
    raw: Any  # the request body as received: hashed for the key, replayed by the single path
    digest: str
    meta: Meta


class PayoutBatcher:
    """Runs payout requests in batches (see the module docstring). One per app, on its event loop.
    The scheduling (queue, batches in flight, fallback, cancellation, drain) is group_commit's."""

    def __init__(self, store: EventStore, *, max_batch: int = MAX_BATCH, max_running: int = MAX_RUNNING) -> None:
        self.store = store
        self._group: GroupCommit[_Request, Answer] = GroupCommit(
            self._commit, self._alone, key=lambda r: r.key, max_batch=max_batch, max_running=max_running,
            name="payout", label=lambda r: r.meta.request_id)
        self.max_batch, self.max_running = max_batch, max_running

    async def request(self, cmd: payout.RequestPayout, meta: Meta, key: str, raw: Any) -> Answer:
        """Request a payout under an Idempotency-Key (the payout id is freshly generated by the caller).
        Returns (HTTP status, body) or raises the typed error the single path would raise."""
        return await self._group.submit(_Request(cmd, key, raw, idempotency.request_hash(SCOPE, raw), meta))

    async def drain(self) -> None:
        """Wait for every batch in flight (and the ones they start) to finish."""
        await self._group.drain()

    # --- running ------------------------------------------------------------------------------------

    async def _alone(self, r: _Request) -> Answer:
        return await platform.execute(
            self.store, r.meta, lambda uow: platform.request_payout(uow, r.cmd, new_id=True),
            idempotency_key=r.key, scope=SCOPE, request=r.raw, created_status=201,
            locks=platform.payout_request_locks(r.cmd))

    async def _commit(self, batch: list[_Request]) -> list[Answer | BaseException]:
        locks = {name for r in batch for name in (idempotency.lock_name(SCOPE, r.key),
                                                  *platform.payout_request_locks(r.cmd))}
        payables = sorted({(accounts.payable(r.cmd.payee_id), r.cmd.currency) for r in batch})
        outcomes: list[Answer | BaseException | None] = [None] * len(batch)
        async with self.store.pool.acquire() as conn, conn.transaction():
            await self.store.lock(conn, locks)
            rows = await conn.fetch(READ_STORED, SCOPE, [r.key for r in batch], [a for a, _ in payables],
                                    [c for _, c in payables])
            stored = {row["key"]: (row["request_hash"], row["status"], row["response"])
                      for row in rows if row["key"] is not None}
            available = {(row["account"], row["currency"]): int(row["balance"])
                         for row in rows if row["key"] is None}
            appends, accepted = [], []
            for i, r in enumerate(batch):
                try:
                    if r.key in stored:
                        answer = idempotency.check(stored[r.key], r.key, r.digest)
                        outcomes[i] = (answer.status, answer.body)
                        continue
                    payable = (accounts.payable(r.cmd.payee_id), r.cmd.currency)
                    decision = payout.decide_request(None, r.cmd, available.get(payable, 0))
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
                recorded = await self.store.append(appends, conn=conn)
                await project(conn, recorded)
                first = {ev.stream_id: ev for ev in recorded if ev.stream_version == 1}
                answers = []
                for i in accepted:
                    r = batch[i]
                    outcomes[i] = (201, views.new_payout_view(first[payout.stream(r.cmd.payout_id)]))
                    answers.append((r.key, r.digest, idempotency.StoredResponse(*outcomes[i])))  # type: ignore[misc]
                await idempotency.remember_many(conn, SCOPE, answers)
        if accepted:
            self.store.wake()
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]
