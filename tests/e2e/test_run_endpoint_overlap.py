"""Two overlapping calls of each run endpoint never handle one item twice (API.md, Ops API).

For each job, 200 due items are prepared, then two POST /api/admin/ops/run/<job>?batch=200 calls are
fired at once at a real `periodya serve` process (cron secret), against a real simulator process.

Overlap is made deterministic with a stall: the test holds a lock that the commit of the FIRST item
(the "solo" payout, first in every job's order) needs. Whichever run claims it first stalls there
while holding its claim; the other run skips it and works through the other 199 items to the end.
Then the lock is released, and the stalled run walks over its list, every item of which the other
run has already handled. (This is what a run slowed by lock contention or a slow provider does.)

The outbox and webhooks jobs handle their whole batch in one transaction, so a run stalled on the solo
item holds its whole batch: there the stalled run is a batch of one (the solo item, first in order),
started first and seen waiting on the lock before the other run (a batch of all 200) starts; that run
must skip the solo item, which the stalled run holds, and handle the other 199.

Checked: one run finished while the other was stalled (so they overlapped), the summaries add up to
exactly the items there were, and from the event log and the simulator's counters that nothing
happened twice: no second PayoutSendStarted, no second provider payout, no provider event applied
twice, no alert raised twice. The sentinel is checked with plain concurrent runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from periodya import db
from periodya.domain import accounts, escrow, payout
from periodya.eventstore import EventStore
from periodya.eventstore.hashing import lock_key
from periodya.handlers import platform
from periodya.handlers.unit_of_work import Meta, run_command
from tests.conftest import database_name
from tests.e2e.procs import System, eventually, fresh_database, running_system
from tests.integration.invariants import assert_money_invariants

N = 200
PAYEES = 20
WIDTH = 5  # concurrent setup commands: the pool keeps what it opens, and the server is shared
SOLO = "po-ov-solo"
META = Meta(actor="test:overlap")


def _solo_payee() -> str:
    """A payee whose in-flight account's lock key sorts before the cash account's: a commit moving its
    money takes that lock FIRST (lock_keys takes keys in ascending order), so holding it stalls the
    commit before it holds anything other runs need (cash:platform is shared by every finalize)."""
    cash = lock_key(accounts.lock_name(accounts.CASH, "USD"))
    return next(p for p in (f"solo-{i}" for i in range(1000))
                if lock_key(accounts.lock_name(accounts.inflight(p), "USD")) < cash)


SOLO_PAYEE = _solo_payee()


async def make_payouts(pool: asyncpg.Pool, n: int = N) -> list[str]:
    """n REQUESTED payouts: the solo payout first (its payee has no other), then n-1 over PAYEES payees.
    Set up in-process: the runs are what is under test."""
    store = EventStore(pool)

    async def fund(payee: str) -> None:
        eid = f"esc-{payee}"
        await run_command(store, META, lambda u: platform.fund_escrow(u, escrow.FundEscrow(eid, 1_000_000, "USD")))
        await run_command(store, META, lambda u: platform.release_escrow(
            u, escrow.ReleaseEscrow(eid, payee, 1_000_000, 0)))

    async def request(pid: str, payee: str, amount: int) -> None:
        cmd = payout.RequestPayout(pid, payee, amount, "USD", f"ba_{payee}")
        await run_command(store, META, lambda u: platform.request_payout(u, cmd))

    await fund(SOLO_PAYEE)
    for chunk in range(0, PAYEES, WIDTH):
        await asyncio.gather(*(fund(f"payee-{p}") for p in range(chunk, min(PAYEES, chunk + WIDTH))))
    await request(SOLO, SOLO_PAYEE, 5_000)
    ids = [f"po-ov-{i:03d}" for i in range(1, n)]
    for chunk in range(0, len(ids), WIDTH):
        await asyncio.gather(*(request(pid, f"payee-{i % PAYEES}", 100 + i)
                               for i, pid in enumerate(ids[chunk:chunk + WIDTH], start=chunk)))
    return [SOLO, *ids]


# --- stalls ------------------------------------------------------------------------------------------

@asynccontextmanager
async def holding_account(pool: asyncpg.Pool, account: str) -> AsyncIterator[None]:
    """Hold the advisory lock a commit posting to `account` takes first."""
    key = lock_key(accounts.lock_name(account, "USD"))
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)


@asynccontextmanager
async def holding_payout_row(pool: asyncpg.Pool, payout_id: str) -> AsyncIterator[None]:
    """Hold the payouts view row of one payout: any commit of a payout event waits at its projection."""
    async with pool.acquire() as conn, conn.transaction():
        assert await conn.fetchval("SELECT 1 FROM payouts WHERE payout_id = $1 FOR UPDATE", payout_id)
        yield


@dataclass(frozen=True)
class Overlap:
    summaries: list[dict[str, Any]]  # [the run that went through, the run that stalled on the solo item]

    @property
    def processed(self) -> int:
        return sum(s["processed"] for s in self.summaries)

    @property
    def failed(self) -> int:
        return sum(s["failed"] for s in self.summaries)

    @property
    def outcomes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.summaries:
            for k, v in s["outcomes"].items():
                out[k] = out.get(k, 0) + v
        return out


async def stalled_overlap(system: System, job: str, stall: Any,
                          first_through: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> Overlap:
    """Two runs at once while `stall` is held: one must get through while the other waits on the solo
    item. `first_through(summary)` may check the state right then. Then release and collect both."""
    tasks: list[asyncio.Task[dict[str, Any]]] = []
    try:
        async with stall:
            tasks = [asyncio.create_task(system.cron(job, f"?batch={N}")) for _ in range(2)]
            done, pending = await asyncio.wait(tasks, timeout=25, return_when=asyncio.FIRST_COMPLETED)
            assert (len(done), len(pending)) == (1, 1), "expected one run through and one stalled on the solo item"
            [through_task], [stalled_task] = done, pending
            through = through_task.result()
            if first_through is not None:
                await first_through(through)
            await asyncio.sleep(0.2)
            assert not stalled_task.done(), "the stalled run finished while the lock was still held"
        stalled = await asyncio.wait_for(stalled_task, 30)
    finally:
        for task in tasks:
            if not task.done():
                await asyncio.wait([task], timeout=30)
    return Overlap([through, stalled])


async def stalled_batch_overlap(system: System, pool: asyncpg.Pool, job: str, stall: Any,
                                first_through: Callable[[dict[str, Any]], Awaitable[None]] | None = None
                                ) -> Overlap:
    """For the batched jobs: a run of batch 1 claims the solo item and stalls on `stall` (holding its claim);
    once it waits on the lock, a run of batch N goes through. Then release and collect both."""
    async def waiting() -> bool:
        return bool(await pool.fetchval("SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = "
                                        "current_database() AND wait_event_type = 'Lock'"))

    stalled_task: asyncio.Task[dict[str, Any]] | None = None
    try:
        async with stall:
            stalled_task = asyncio.create_task(system.cron(job, "?batch=1"))
            await eventually(waiting, "the batch-of-one run to stall on the solo item")
            through = await asyncio.wait_for(system.cron(job, f"?batch={N}"), 25)
            if first_through is not None:
                await first_through(through)
            await asyncio.sleep(0.2)
            assert not stalled_task.done(), "the stalled run finished while the lock was still held"
        stalled = await asyncio.wait_for(stalled_task, 30)
    finally:
        if stalled_task is not None and not stalled_task.done():
            await asyncio.wait([stalled_task], timeout=30)
    return Overlap([through, stalled])


async def per_payout(pool: asyncpg.Pool, event_type: str) -> dict[int, int]:
    """How many payouts have how many events of `event_type`: {count: payouts}."""
    rows = await pool.fetch(
        "SELECT n, count(*) AS payouts FROM (SELECT stream_id, count(*) FILTER (WHERE event_type = $1) AS n "
        "FROM events WHERE stream_id LIKE 'payout-%' GROUP BY stream_id) s GROUP BY n", event_type)
    return {r["n"]: r["payouts"] for r in rows}


async def send(system: System, batch: int) -> None:
    """Send due payouts (a run not under test)."""
    summary = await system.cron("outbox", f"?batch={batch}")
    assert summary["outcomes"] == {"sent": batch}, summary


async def provider_ids(pool: asyncpg.Pool) -> list[str]:
    return [r["provider_payout_id"] for r in await pool.fetch(
        "SELECT provider_payout_id FROM payouts WHERE provider_payout_id IS NOT NULL ORDER BY status_changed_at")]


async def settle_all(system: System, ids: list[str]) -> None:
    for chunk in range(0, len(ids), 25):
        await asyncio.gather(*(system.settle(p, "paid") for p in ids[chunk:chunk + 25]))


def older_than(table: str, status: str, column: str) -> str:
    return f"SELECT count(*) = {N} FROM {table} WHERE status = '{status}' AND {column} < now() - interval '1.5 s'"


# --- outbox ------------------------------------------------------------------------------------------

async def test_outbox_overlap(database_url: str, pool: asyncpg.Pool, sim_url: str, tmp_path: Path) -> None:
    await make_payouts(pool)
    async with running_system(database_url, tmp_path, sim_url=sim_url, admin=False) as system:
        async def through(summary: dict[str, Any]) -> None:
            assert summary["outcomes"] == {"sent": N - 1}, summary  # all but the solo one, being claimed
            assert await pool.fetchval("SELECT status FROM payouts WHERE payout_id = $1", SOLO) == "REQUESTED"

        run = await stalled_batch_overlap(system, pool, "outbox", holding_payout_row(pool, SOLO), through)
        assert run.summaries[1]["outcomes"] == {"sent": 1}, run.summaries
        assert (run.processed, run.failed, run.outcomes) == (N, 0, {"sent": N}), run.summaries
        assert await per_payout(pool, "PayoutSendStarted") == {1: N}  # one claim each, never two
        assert await per_payout(pool, "PayoutSent") == {1: N}
        stats = await system.sim_stats()
        assert (stats["payoutsCreated"], stats["idempotentReplays"]) == (N, 0), stats
        held = await system.sim_payouts()
        assert len({p["metadata"]["payout_id"] for p in held}) == len(held) == N


# --- webhooks ----------------------------------------------------------------------------------------

async def test_webhooks_overlap(database_url: str, pool: asyncpg.Pool, sim_url: str, tmp_path: Path) -> None:
    await make_payouts(pool)
    async with running_system(database_url, tmp_path, sim_url=sim_url, admin=False,
                              env={"PERIODYA_SENT_STUCK_MINUTES": "10"}) as system:
        await send(system, N)
        ids = await provider_ids(pool)
        solo_ppid = await pool.fetchval("SELECT provider_payout_id FROM payouts WHERE payout_id = $1", SOLO)
        await system.settle(solo_ppid, "paid")  # its webhook first: first in the webhooks job's order
        await eventually(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"), "the solo webhook")
        await settle_all(system, [i for i in ids if i != solo_ppid])
        await eventually(lambda: pool.fetchval("SELECT count(*) = $1 FROM provider_events", N),
                         "every paid webhook to be stored", seconds=30)

        run = await stalled_batch_overlap(system, pool, "webhooks",
                                          holding_account(pool, accounts.inflight(SOLO_PAYEE)))
        assert run.summaries[0]["outcomes"] == {"applied": N - 1}, run.summaries
        assert run.summaries[0]["skipped"] == 1, run.summaries  # the solo event, held by the stalled run
        assert (run.processed, run.failed, run.outcomes) == (N, 0, {"applied": N}), run.summaries
        applied = await pool.fetch("SELECT stream_id, count(*) AS n FROM events WHERE event_type = "
                                   "'ProviderEventApplied' GROUP BY stream_id HAVING count(*) <> 1")
        assert applied == []
        assert await pool.fetchval("SELECT count(*) FROM provider_events WHERE applied_seq IS NULL") == 0
        assert await per_payout(pool, "PayoutProviderPaid") == {1: N}
        assert await per_payout(pool, "PayoutFinalized") == {1: N}
        await assert_money_invariants(pool)


# --- reconcile-pull and repair: one scenario each, shared by two tests --------------------------------

@dataclass(frozen=True)
class Scenario:
    run: Overlap
    pool: asyncpg.Pool
    created_before: int = 0
    stats: dict[str, int] | None = None
    held: list[dict[str, Any]] | None = None


@asynccontextmanager
async def module_system(server_url: str, template_url: str, sim_url: str, log_dir: Path, **kwargs: Any
                        ) -> AsyncIterator[tuple[asyncpg.Pool, System]]:
    async with fresh_database(server_url, database_name(template_url), "overlap") as url:
        pool = await db.connect_pool(url, min_size=1, max_size=WIDTH + 2)
        try:
            async with running_system(url, log_dir, sim_url=sim_url, admin=False, **kwargs) as system:
                yield pool, system
        finally:
            await pool.close()


@pytest.fixture(scope="module")
async def reconcile_overlap(server_url: str, template_url: str, sim_url: str,
                            tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    """200 payouts SENT (the solo one first) and paid at the provider, every webhook dropped."""
    async with module_system(server_url, template_url, sim_url, tmp_path_factory.mktemp("reconcile"),
                             sim={"webhookDropRate": 1.0}) as (pool, system):
        await make_payouts(pool)
        await send(system, 1)  # the solo payout, first created: first SENT, first in reconcile-pull's order
        await send(system, N - 1)
        await settle_all(system, await provider_ids(pool))
        assert (await system.sim_stats())["webhooksDropped"] == N
        await eventually(lambda: pool.fetchval(older_than("payouts", "SENT", "status_changed_at")),
                         "the payouts to pass the SENT threshold")

        async def through(summary: dict[str, Any]) -> None:
            assert summary["outcomes"] == {"paid": N - 1}, summary
            assert await pool.fetchval("SELECT status FROM payouts WHERE payout_id = $1", SOLO) == "SENT"

        run = await stalled_overlap(system, "reconcile-pull", holding_account(pool, accounts.inflight(SOLO_PAYEE)),
                                    through)
        yield Scenario(run, pool)


async def test_reconcile_pull_overlap_has_no_double_effect(reconcile_overlap: Scenario) -> None:
    run, pool = reconcile_overlap.run, reconcile_overlap.pool
    assert run.failed == 0 and run.outcomes.get("paid") == N, run.summaries
    assert await per_payout(pool, "PayoutProviderPaid") == {1: N}
    assert await per_payout(pool, "PayoutFinalized") == {1: N}
    assert await pool.fetchval("SELECT count(*) FROM payouts WHERE status = 'FINALIZED'") == N
    await assert_money_invariants(pool)


async def test_reconcile_pull_overlap_handles_each_item_once(reconcile_overlap: Scenario) -> None:
    run = reconcile_overlap.run
    assert run.processed == N and "unchanged" not in run.outcomes, run.summaries


@pytest.fixture(scope="module")
async def repair_overlap(server_url: str, template_url: str, sim_url: str,
                         tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    """200 payouts stuck in SENDING: an outbox runner process claimed all 200 (the solo one first), the
    provider accepted the first few sends (up to the send concurrency), and it was SIGKILLed there."""
    async with module_system(server_url, template_url, sim_url, tmp_path_factory.mktemp("repair")) as (pool, system):
        await make_payouts(pool)
        runner, _ = await system.paused("after_provider_accept", "outbox", "--batch", str(N))
        await asyncio.sleep(0.3)  # let the other sends in flight reach the provider, then crash
        assert await runner.kill() < 0
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE status = 'SENDING'") == N
        created_before = (await system.sim_stats())["payoutsCreated"]
        assert 1 <= created_before < N
        await eventually(lambda: pool.fetchval(older_than("outbox", "SENDING", "updated_at")),
                         "the tasks to pass the SENDING threshold")

        async def through(summary: dict[str, Any]) -> None:
            assert summary["outcomes"] == {"sent": N - 1}, summary
            assert await pool.fetchval("SELECT status FROM payouts WHERE payout_id = $1", SOLO) == "SENDING"

        run = await stalled_overlap(system, "repair", holding_payout_row(pool, SOLO), through)
        yield Scenario(run, pool, created_before, await system.sim_stats(), await system.sim_payouts())


async def test_repair_overlap_has_no_double_effect(repair_overlap: Scenario) -> None:
    run, pool, stats, held = repair_overlap.run, repair_overlap.pool, repair_overlap.stats, repair_overlap.held
    assert stats is not None and held is not None
    assert run.failed == 0 and run.outcomes.get("sent") == N, run.summaries
    assert await per_payout(pool, "PayoutSendStarted") == {1: N}
    assert await per_payout(pool, "PayoutSent") == {1: N}
    # Exactly one provider payout per payout: the ones made before the crash were replayed, not remade.
    assert (stats["payoutsCreated"], stats["idempotentReplays"]) == (N, repair_overlap.created_before), stats
    assert len({p["metadata"]["payout_id"] for p in held}) == len(held) == N
    ours = {r["provider_payout_id"] for r in await pool.fetch("SELECT provider_payout_id FROM payouts")}
    assert ours == {p["id"] for p in held}


async def test_repair_overlap_handles_each_item_once(repair_overlap: Scenario) -> None:
    run = repair_overlap.run
    assert run.processed == N and "moved_on" not in run.outcomes, run.summaries


# --- sentinel ----------------------------------------------------------------------------------------

async def test_sentinel_overlap_raises_each_alert_once(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                       tmp_path: Path) -> None:
    """200 payouts stuck in SENT (more than one run raises: 50 per code per run, then ALERTS_CAPPED);
    four rounds of two concurrent sentinel runs."""
    await make_payouts(pool)
    async with running_system(database_url, tmp_path, sim_url=sim_url, admin=False) as system:
        await send(system, N)
        await eventually(lambda: pool.fetchval(older_than("payouts", "SENT", "status_changed_at")),
                         "the payouts to pass the SENT threshold")
        for mode in ("full", "recent", "full", "recent"):
            summaries = await asyncio.gather(*(system.cron("sentinel", f"?mode={mode}") for _ in range(2)))
            assert sum(s["failed"] for s in summaries) == 0, summaries
            runs = await pool.fetch("SELECT started_at, finished_at FROM job_runs WHERE job = 'sentinel' "
                                    "ORDER BY run_id DESC LIMIT 2")
            assert max(r["started_at"] for r in runs) < min(r["finished_at"] for r in runs), "did not overlap"
        twice = await pool.fetch("SELECT code, subject, count(*) FROM alerts WHERE status <> 'RESOLVED' "
                                 "GROUP BY code, subject HAVING count(*) > 1")
        assert twice == []
        per_stream = await pool.fetch("SELECT stream_id FROM events WHERE event_type = 'AlertRaised' "
                                      "GROUP BY stream_id HAVING count(*) > 1")
        assert per_stream == []
        assert await pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'AlertRaised'") == \
            await pool.fetchval("SELECT count(*) FROM alerts")
        runs = await pool.fetch("SELECT summary FROM job_runs WHERE job = 'sentinel' AND summary IS NOT NULL")
        said = sum(v for r in runs for k, v in r["summary"]["outcomes"].items() if k.startswith("raised:"))
        assert said == await pool.fetchval("SELECT count(*) FROM alerts WHERE code <> 'ALERTS_CAPPED'")
        # Each run raises up to 50 new SENT_STUCK: after four rounds all 200 are raised, each exactly once.
        assert await pool.fetchval("SELECT count(DISTINCT subject) FROM alerts WHERE code = 'SENT_STUCK'") == N
        assert await pool.fetchval("SELECT count(*) FROM alerts WHERE code = 'SENT_STUCK'") == N
        assert await pool.fetchval("SELECT count(*) FROM alerts WHERE code = 'ALERTS_CAPPED'") <= 1
