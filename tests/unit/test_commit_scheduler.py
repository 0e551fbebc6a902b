"""The group commit scheduler (periodya/handlers/commit_scheduler.py) on its own: batches, keys, fallback,
cancellation and drain, with plain coroutines standing in for the transactions (no database needed:
the scheduler has no SQL in it; the real batches are tested in test_payout_batch / test_webhook_intake)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence

import pytest

from periodya.handlers.commit_scheduler import GroupCommit


class Recorder:
    """`commit` records each batch and answers each request doubled; a request < 0 fails its whole batch;
    `alone` answers one request, and refuses a negative one."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.alone: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def commit(self, batch: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(batch))
        await self.gate.wait()
        if any(r < 0 for r in batch):
            raise RuntimeError("the batch failed")
        return [ValueError(f"odd {r}") if r % 2 else r * 2 for r in batch]

    async def single(self, request: int) -> int:
        self.alone.append(request)
        if request < 0:
            raise LookupError(f"refused {request}")
        return request * 2


def group(rec: Recorder, *, max_batch: int = 64, max_running: int = 1,
          key: Callable[[int], Hashable] | None = None) -> GroupCommit[int, int]:
    return GroupCommit(rec.commit, rec.single, key=key, max_batch=max_batch, max_running=max_running, name="test")


async def test_queued_requests_share_the_next_batch_and_get_their_own_outcome() -> None:
    rec = Recorder()
    g = group(rec)
    results = await asyncio.gather(*(g.submit(r) for r in (2, 4, 5, 6)), return_exceptions=True)
    assert rec.batches == [[2], [4, 5, 6]]  # the first runs at once, alone; the rest queued meanwhile
    assert results[:2] == [4, 8] and results[3] == 12 and isinstance(results[2], ValueError)


async def test_max_batch_splits_the_queue() -> None:
    rec = Recorder()
    g = group(rec, max_batch=2)
    await asyncio.gather(*(g.submit(r) for r in (0, 2, 4, 6, 8)))
    assert rec.batches == [[0], [2, 4], [6, 8]]


async def test_one_request_per_key_in_a_batch_the_repeat_waits_for_the_next() -> None:
    rec = Recorder()
    g = group(rec, key=lambda r: r % 10)
    await asyncio.gather(*(g.submit(r) for r in (0, 2, 12, 4, 22)))
    assert rec.batches == [[0], [2, 4], [12], [22]]


async def test_a_failing_batch_reruns_each_request_alone() -> None:
    rec = Recorder()
    g = group(rec)
    results = await asyncio.gather(*(g.submit(r) for r in (0, 2, -4, 6)), return_exceptions=True)
    assert rec.batches == [[0], [2, -4, 6]] and sorted(rec.alone) == [-4, 2, 6]
    assert results[:2] == [0, 4] and results[3] == 12 and isinstance(results[2], LookupError)


async def test_a_caller_cancelled_while_queued_is_skipped() -> None:
    rec = Recorder()
    rec.gate.clear()
    g = group(rec)
    first = asyncio.ensure_future(g.submit(0))
    gone = asyncio.ensure_future(g.submit(2))
    kept = asyncio.ensure_future(g.submit(4))
    await asyncio.sleep(0)
    gone.cancel()
    rec.gate.set()
    assert await first == 0 and await kept == 8
    assert rec.batches == [[0], [4]]


async def test_a_cancelled_batch_cancels_its_waiting_callers_and_drain_waits_for_it() -> None:
    rec = Recorder()
    rec.gate.clear()
    g = group(rec, max_running=2)
    callers = [asyncio.ensure_future(g.submit(r)) for r in (0, 2)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert rec.batches == [[0], [2]]
    for task in list(g._running):  # shutdown cancels the batch tasks
        task.cancel()
    await g.drain()
    assert not g._running
    for caller in callers:
        with pytest.raises(asyncio.CancelledError):
            await caller


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        group(Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="at least 1"):
        group(Recorder(), max_running=0)


async def test_without_alone_a_failed_batch_reruns_each_request_as_a_batch_of_one() -> None:
    """The default: a request rerun alone goes through the same `commit` as every batch (one path)."""
    rec = Recorder()
    g: GroupCommit[int, int] = GroupCommit(rec.commit, max_batch=64, max_running=1, name="test")
    results = await asyncio.gather(*(g.submit(r) for r in (0, 2, -4, 6)), return_exceptions=True)
    assert rec.batches == [[0], [2, -4, 6], [2], [-4], [6]] and rec.alone == []
    assert results[:2] == [0, 4] and results[3] == 12 and isinstance(results[2], RuntimeError)
