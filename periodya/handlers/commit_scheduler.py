"""The commit scheduler of the request handlers: requests that arrive together share one transaction.

The generic part of a group commit, with no SQL in it: a queue of waiting requests, at most
`max_running` batches in flight, the next batch taken from the queue when one finishes, a failed batch
rerun request by request, cancellation and draining. What a batch does is the caller's `commit` (all
of a batch in ONE transaction, returning one outcome per request, in order). A request rerun alone is
a batch of one through that same `commit` (unless `alone` is given: this module's tests give it, to
see the reruns), so there is one path per write. Used by POST /api/payouts (payout_batch.PayoutBatcher)
and by the provider webhook intake (http/webhook_routes). Not to be confused with the event store's append batcher
(periodya/eventstore), which sits below this layer.

Scheduling: a request that arrives while fewer than `max_running` batches run starts at once, as a
batch of one; otherwise it queues, and the next batch takes every queued request (up to `max_batch`)
in arrival order, skipping requests whose caller went away; with a `key`, at most one request per key
(a second request with the same key waits for a later batch, which then sees the first one's committed
effect); without one, `commit` handles repeats within a batch itself.

Why a failure is safe: `commit` must be all or nothing (one transaction). If it raises, nothing of the
batch was written, and every request in it runs again ALONE (a batch of one), concurrently: one bad
request never fails the others. A failure whose outcome is unknown (the connection lost around COMMIT)
is retried the same way; that is safe only because both users are idempotent: a payout request finds
its Idempotency-Key's stored answer, a provider event its NO_STREAM stream. (The event store's own
append batcher serves appends that need not be idempotent, so it does not retry an unknown outcome;
it also sits below this layer and sizes its batches by events.) An outcome that
is an exception (a per-request refusal inside a batch that committed) is raised to that caller only.

Cancellation and shutdown: a batch runs in its own task (a fresh context: it belongs to no single
request, so its logs carry no request's id). A caller that is cancelled while queued is skipped; one
cancelled while its batch runs does not stop the batch (its effect may be committed: a retry with the
same key finds it). If the batch task itself is cancelled, every request still waiting in it is
cancelled, so that nobody waits forever. `drain` waits for every batch in flight and the ones they start.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from periodya import metrics
from periodya.logging import get_logger

T = TypeVar("T")  # a request
A = TypeVar("A")  # its answer
log = get_logger("periodya.group_commit")


class GroupCommit(Generic[T, A]):
    """Runs requests in batches (see the module docstring). One per app, on its event loop."""

    def __init__(self, commit: Callable[[list[T]], Awaitable[Sequence[A | BaseException]]],
                 alone: Callable[[T], Awaitable[A]] | None = None, *, key: Callable[[T], Hashable] | None = None,
                 max_batch: int, max_running: int, name: str, label: Callable[[T], object] = repr) -> None:
        if max_batch < 1 or max_running < 1:
            raise ValueError("max_batch and max_running must be at least 1")
        self._commit, self._key, self._label = commit, key, label
        self._alone = alone or self._batch_of_one
        self.max_batch, self.max_running, self.name = max_batch, max_running, name
        self._queue: deque[tuple[T, asyncio.Future[A]]] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, request: T) -> A:
        """Queue `request` and wait for its answer (or the exception its batch gave it)."""
        future: asyncio.Future[A] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._start()
        return await future

    async def drain(self) -> None:
        """Wait for every batch in flight (and the ones they start) to finish."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    # --- scheduling ---------------------------------------------------------------------------------

    def _start(self) -> None:
        while self._queue and len(self._running) < self.max_running:
            batch = self._take()
            if not batch:
                return
            task = asyncio.get_running_loop().create_task(self._run(batch), context=contextvars.Context())
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    def _take(self) -> list[tuple[T, asyncio.Future[A]]]:
        """The next batch: queued requests in arrival order, at most one per key, skipping abandoned ones."""
        batch: list[tuple[T, asyncio.Future[A]]] = []
        keys: set[Hashable] = set()
        later: list[tuple[T, asyncio.Future[A]]] = []
        while self._queue and len(batch) < self.max_batch:
            item = self._queue.popleft()
            if item[1].done():  # the caller was cancelled while queued
                continue
            k = self._key(item[0]) if self._key is not None else None
            if k is not None and k in keys:
                later.append(item)
            else:
                keys.add(k)
                batch.append(item)
        self._queue.extendleft(reversed(later))
        return batch

    # --- running ------------------------------------------------------------------------------------

    async def _batch_of_one(self, request: T) -> A:
        """`request` alone, through the same `commit` as any batch."""
        [outcome] = await self._commit([request])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _run(self, batch: list[tuple[T, asyncio.Future[A]]]) -> None:
        requests = [r for r, _ in batch]
        metrics.group_commit_batch(self.name, len(batch))
        outcomes: Sequence[A | BaseException]
        try:
            try:
                outcomes = await self._commit(requests)
            except Exception as exc:  # nothing was written: isolate every request in its own transaction
                if len(batch) > 1:
                    log.warning(f"{self.name} batch failed; running its requests one by one", size=len(batch),
                                error=type(exc).__name__, requests=[self._label(r) for r in requests])
                outcomes = await asyncio.gather(*(self._alone(r) for r in requests), return_exceptions=True)
        except BaseException:  # cancelled (shutdown): nobody may wait forever
            for _, future in batch:
                if not future.done():
                    future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
