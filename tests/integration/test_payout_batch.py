"""Group commit of payout requests (periodya/handlers/payout_batch.py), against a real database.

The batcher is driven directly so that batch boundaries are known: with `max_running=1`, the first
request runs alone and every request queued meanwhile shares the next transaction (checked through
the events' transaction ids). What must hold inside one batch: the balance is decided request by
request (never overdrawn, refusals write nothing), one request per idempotency key, each event keeps
its own request's metadata, and a batch that fails reruns its requests one by one so that one bad
request never fails the others.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg
import pytest

from periodya.audit.replay import replay_and_diff
from periodya.domain import escrow, payout
from periodya.domain.errors import InsufficientFunds, ValidationFailed
from periodya.errors import ConcurrencyConflict
from periodya.eventstore import EventStore
from periodya.handlers import platform, views
from periodya.handlers.idempotency import IdempotencyKeyReused
from periodya.handlers.payout_batch import PayoutBatcher
from periodya.handlers.unit_of_work import Meta, run_command
from tests.integration import lifecycle
from tests.integration.invariants import assert_money_invariants

META = Meta(actor="test")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def credit(store: EventStore, payee: str, amount: int, currency: str = "USD") -> None:
    eid = f"esc_{uuid.uuid4().hex[:10]}"
    await run_command(store, META, lambda u: platform.fund_escrow(u, escrow.FundEscrow(eid, amount, currency)))
    await run_command(store, META, lambda u: platform.release_escrow(u, escrow.ReleaseEscrow(eid, payee, amount, 0)))


def body(payee: str, amount: int, currency: str = "USD", destination: str = "ba_1") -> dict[str, Any]:
    return {"payeeId": payee, "amount": amount, "currency": currency, "destination": destination}


def command(raw: dict[str, Any], payout_id: str | None = None) -> payout.RequestPayout:
    return payout.RequestPayout(payout_id or f"pay_{uuid.uuid4().hex}", raw["payeeId"], raw["amount"],
                                raw["currency"], raw["destination"])


async def submit(batcher: PayoutBatcher, raws: list[tuple[str, dict[str, Any]]],
                 ids: list[str | None] | None = None) -> list[Any]:
    """Queue every request before any of them runs (the first one starts at once, alone)."""
    ids = ids or [None] * len(raws)
    return await asyncio.wait_for(asyncio.gather(
        *(batcher.request(command(raw, pid), Meta(actor="test", request_id=f"req-{n}"), key, raw)
          for n, ((key, raw), pid) in enumerate(zip(raws, ids, strict=True))), return_exceptions=True), timeout=60)


async def available(pool: asyncpg.Pool, payee: str, currency: str = "USD") -> tuple[int, int]:
    row = await pool.fetchrow(
        "SELECT coalesce(sum(balance) FILTER (WHERE account = 'payable:' || $1), 0) AS a, "
        "coalesce(sum(balance) FILTER (WHERE account = 'inflight:' || $1), 0) AS f FROM balances "
        "WHERE currency = $2", payee, currency)
    return int(row["a"]), int(row["f"])


async def assert_replay_matches(pool: asyncpg.Pool) -> None:
    """A batch projects many streams' events in one apply pass; rebuilding from the log must agree."""
    diffs = await replay_and_diff(pool, "replay_batch")
    assert [d.table for d in diffs if not d.clean] == [], [d for d in diffs if not d.clean]


async def payout_transactions(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval(
        "SELECT count(DISTINCT tx) FROM events WHERE event_type = 'PayoutRequested'"))


async def test_one_batch_draws_one_balance_down_request_by_request(store: EventStore, pool: asyncpg.Pool) -> None:
    await credit(store, "p1", 1_000)
    await credit(store, "p2", 250)
    batcher = PayoutBatcher(store, max_running=1)
    raws = [(f"k{n}", body("p1" if n % 2 else "p2", 100, destination=f"ba_{n}")) for n in range(24)]
    answers = await submit(batcher, raws)
    created = [a for a in answers if isinstance(a, tuple)]
    refused = [a for a in answers if not isinstance(a, tuple)]
    # p1 (odd n, 12 requests) has room for 10, p2 (even n, 12 requests) for 2
    assert len(created) == 12 and all(s == 201 for s, _ in created), answers
    assert len(refused) == 12 and all(isinstance(e, InsufficientFunds) for e in refused), refused
    assert sum(1 for (_, raw), a in zip(raws, answers, strict=True) if raw["payeeId"] == "p1"
               and isinstance(a, tuple)) == 10
    assert await available(pool, "p1") == (0, 1_000)
    assert await available(pool, "p2") == (50, 200)
    assert await payout_transactions(pool) < len(created), "the queued requests were not batched"
    assert await pool.fetchval("SELECT count(*) FROM payouts") == 12
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 12
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys") == 12  # refusals are not remembered
    await assert_money_invariants(pool)
    await assert_replay_matches(pool)


async def test_answers_match_the_read_model_and_keep_their_own_metadata(store: EventStore,
                                                                        pool: asyncpg.Pool) -> None:
    await credit(store, "p", 10_000)
    batcher = PayoutBatcher(store, max_running=1)
    answers = await submit(batcher, [(f"m{n}", body("p", 10 + n, destination=f"ba_{n}")) for n in range(8)])
    for n, (status, out) in enumerate(answers):
        assert status == 201
        assert out == await views.payout_view(pool, out["payoutId"])
        assert out["amount"] == 10 + n and out["destination"] == f"ba_{n}"
        events = await views.payout_events(pool, out["payoutId"])
        assert [e["metadata"]["requestId"] for e in events["events"]] == [f"req-{n}"]
        stored = await pool.fetchval("SELECT response FROM idempotency_keys WHERE key = $1", f"m{n}")
        assert stored == out
    groups = await pool.fetch("SELECT metadata->>'requestId' AS rid, data->>'subject' AS subject FROM events "
                              "WHERE event_type = 'LedgerGroupPosted' AND data->>'kind' = 'payout_reserved'")
    assert {g["subject"]: g["rid"] for g in groups} == {
        payout.stream(out["payoutId"]): f"req-{n}" for n, (_, out) in enumerate(answers)}


async def test_one_key_per_batch_and_a_different_body_is_refused(store: EventStore, pool: asyncpg.Pool) -> None:
    await credit(store, "p", 10_000)
    batcher = PayoutBatcher(store, max_running=1)
    same = body("p", 700)
    raws = [("warmup", body("p", 1))] + [("dup", same)] * 6 + [("dup", body("p", 701)), ("other", body("p", 5))]
    answers = await submit(batcher, raws)
    assert answers[0][0] == 201
    dups = answers[1:7]
    assert all(a[0] == 201 for a in dups), dups
    assert len({a[1]["payoutId"] for a in dups}) == 1 and all(a == dups[0] for a in dups)
    assert isinstance(answers[7], IdempotencyKeyReused)
    assert answers[8][0] == 201
    assert await available(pool, "p") == (10_000 - 1 - 700 - 5, 706)
    assert await pool.fetchval("SELECT count(*) FROM payouts") == 3
    await assert_money_invariants(pool)


async def test_a_refused_request_does_not_disturb_its_batch(store: EventStore, pool: asyncpg.Pool) -> None:
    await credit(store, "p", 1_000)
    await credit(store, "p", 1_000, "EUR")
    batcher = PayoutBatcher(store, max_running=1)
    raws = [("a", body("p", 1)), ("b", body("p", 100, "XXX")), ("c", body("p", 200, "EUR")),
            ("d", body("p", 5_000)), ("e", body("p", 300))]
    answers = await submit(batcher, raws)
    assert [type(a).__name__ if isinstance(a, Exception) else a[0] for a in answers] == [
        201, "ValidationFailed", 201, "InsufficientFunds", 201]
    assert isinstance(answers[1], ValidationFailed)
    assert await available(pool, "p") == (699, 301)
    assert await available(pool, "p", "EUR") == (800, 200)
    await assert_money_invariants(pool)


async def test_a_failing_batch_reruns_each_request_alone(store: EventStore, pool: asyncpg.Pool) -> None:
    await credit(store, "p", 1_000)
    taken = "pay_taken"
    await run_command(store, META, lambda u: platform.request_payout(u, command(body("p", 1), taken)))
    batcher = PayoutBatcher(store, max_running=1)
    raws = [(f"f{n}", body("p", 10 * (n + 1))) for n in range(6)]
    # request 3 reuses an existing payout id: its append conflicts, which fails the whole batch
    answers = await submit(batcher, raws, ids=[None, None, None, taken, None, None])
    assert isinstance(answers[3], ConcurrencyConflict), answers[3]
    assert [a[0] for n, a in enumerate(answers) if n != 3] == [201] * 5
    assert await available(pool, "p") == (1_000 - 1 - (10 + 20 + 30 + 50 + 60), 1 + 10 + 20 + 30 + 50 + 60)
    assert await pool.fetchval("SELECT count(*) FROM payouts") == 6
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = 'f3'") == 0
    await assert_money_invariants(pool)


async def test_concurrent_batches_race_for_one_balance(store: EventStore, pool: asyncpg.Pool) -> None:
    """Several batches in flight at once (two batchers: two server processes) against one payee."""
    amount, fits = 125, 20
    await credit(store, "hot", amount * fits)
    batchers = [PayoutBatcher(store, max_running=3), PayoutBatcher(store, max_running=2)]
    answers = await asyncio.wait_for(asyncio.gather(*(
        batchers[n % 2].request(command(body("hot", amount)), META, f"h{n}", body("hot", amount))
        for n in range(64)), return_exceptions=True), timeout=60)
    created = [a for a in answers if isinstance(a, tuple)]
    assert len(created) == fits
    assert all(isinstance(a, InsufficientFunds) for a in answers if not isinstance(a, tuple))
    assert await available(pool, "hot") == (0, amount * fits)
    await assert_money_invariants(pool)
    await assert_replay_matches(pool)


async def test_batches_beside_releases_and_payout_lifecycles_never_deadlock(store: EventStore,
                                                                           pool: asyncpg.Pool) -> None:
    """Batches hold many payees' account locks at once while escrow releases credit those payees and
    earlier payouts of theirs fail (funds back: their stream first, then the same accounts) and finalize.
    PostgreSQL would abort a transaction with DeadlockDetectedError if the lock order admitted a cycle."""
    payees = [f"d{n}" for n in range(6)]
    for p in payees:
        await credit(store, p, 5_000)
    earlier = []
    for n, p in enumerate(payees * 2):
        pid = f"pay_early_{n}"
        cmd = command(body(p, 50), pid)
        await run_command(store, META, partial(platform.request_payout, cmd=cmd))
        await run_command(store, META, partial(lifecycle.start_send, payout_id=pid, now=NOW))
        await run_command(store, META, partial(lifecycle.record_sent, payout_id=pid, provider_payout_id=f"po_{pid}",
                                               source="outbox"))
        earlier.append(pid)
    batcher = PayoutBatcher(store)

    async def settle(n: int, pid: str) -> None:
        if n % 2:
            await run_command(store, META, lambda u: lifecycle.record_failed(u, pid, f"po_{pid}", "webhook"))
        else:
            await run_command(store, META, lambda u: lifecycle.record_paid(u, pid, f"po_{pid}", "webhook"))
            await run_command(store, META, lambda u: lifecycle.finalize(u, pid, "webhook"))

    work: list[Any] = [batcher.request(command(body(payees[n % 6], 30)), META, f"dl{n}", body(payees[n % 6], 30))
            for n in range(90)]
    work += [credit(store, payees[n % 6], 100) for n in range(12)]
    work += [settle(n, pid) for n, pid in enumerate(earlier)]
    results = await asyncio.wait_for(asyncio.gather(*work, return_exceptions=True), timeout=120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [], errors
    for i, p in enumerate(payees):
        returned = 100 if i % 2 else 0  # payee i's earlier payouts are numbers i and i + 6: odd ones failed
        assert await available(pool, p) == (5_000 + 200 - 100 + returned - 15 * 30, 15 * 30), p
    await assert_money_invariants(pool)
    await assert_replay_matches(pool)


@pytest.mark.parametrize("max_batch, max_running", [(0, 1), (1, 0)])
def test_limits_must_be_positive(store: EventStore, max_batch: int, max_running: int) -> None:
    with pytest.raises(ValueError):
        PayoutBatcher(store, max_batch=max_batch, max_running=max_running)
