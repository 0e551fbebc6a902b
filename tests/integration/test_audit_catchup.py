"""The catch-up driver: pages applied with the checkpoint in one transaction, so a crash or a cancelled
task between (or inside) pages resumes exactly once: nothing applied twice, nothing skipped."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest

from periodya.eventstore import EventStore, RecordedEvent
from periodya.projections import PROJECTIONS
from periodya.projections.catchup import CatchUp
from periodya.projections.replay import diff_table
from tests.integration.test_audit_replay import PROGRAM
from tests.integration.test_ledger_properties import _run


class Crash(Exception):
    pass


def demo_projection(crash_every: int = 0, pause_at: int = 0, paused: asyncio.Event | None = None) -> SimpleNamespace:
    """A view that is not inline: one row per event seen (a second apply of one event violates the primary
    key) and a count per type. Optionally crashes after writing part of every `crash_every`-th page, or
    stops forever in the middle of page `pause_at` (after writing part of it), setting `paused`."""
    calls = [0]

    async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        calls[0] += 1
        await conn.executemany("INSERT INTO audit_demo_seen (seq) VALUES ($1)", [(e.seq,) for e in events])
        if crash_every and calls[0] % crash_every == 0:
            raise Crash(f"crash in page {calls[0]}")
        if pause_at and calls[0] == pause_at and paused is not None:
            paused.set()
            await asyncio.sleep(3600)  # the test cancels the task here, mid-page
        for ev in events:
            await conn.execute("INSERT INTO audit_demo_counts AS c (event_type, n) VALUES ($1, 1) "
                               "ON CONFLICT (event_type) DO UPDATE SET n = c.n + 1", ev.type)

    return SimpleNamespace(TABLES=("audit_demo_seen", "audit_demo_counts"), apply=apply)


def demo_crasher(every: int) -> SimpleNamespace:
    """Listed after real projections: fails every n-th page after they wrote their part, before the checkpoint."""
    calls = [0]

    async def apply(_conn: asyncpg.Connection, _events: Sequence[RecordedEvent]) -> None:
        calls[0] += 1
        if calls[0] % every == 0:
            raise Crash(f"crash in page {calls[0]}")

    return SimpleNamespace(TABLES=(), apply=apply)


@pytest.fixture
async def demo_tables(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE audit_demo_seen (seq bigint PRIMARY KEY); "
                       "CREATE TABLE audit_demo_counts (event_type text PRIMARY KEY, n bigint NOT NULL)")


async def _settled(pool: asyncpg.Pool) -> None:
    """Wait until every event is below the snapshot horizon. The horizon is cluster-wide: a transaction
    in another database (another test session on the same server) can hold it back for a moment."""
    async with asyncio.timeout(60):
        while not await pool.fetchval(  # noqa: ASYNC110 - polling the database
                "SELECT coalesce((SELECT tx FROM events ORDER BY tx DESC LIMIT 1), '0') "
                "< pg_snapshot_xmin(pg_current_snapshot())"):
            await asyncio.sleep(0.02)


async def _head(pool: asyncpg.Pool) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT tx::text::bigint AS tx, seq FROM events ORDER BY tx DESC, seq DESC LIMIT 1")
    return row["tx"], row["seq"]


async def _finish(runner: CatchUp, limit_s: float = 60.0) -> None:
    """Catch up to the newest event (the horizon may lag behind other sessions on a shared server)."""
    head = await _head(runner.store.pool)
    deadline = time.monotonic() + limit_s
    while (p := await runner.position()) and (p.tx, p.seq) < head:
        await runner.run_until_caught_up()
        assert time.monotonic() < deadline, f"stuck at {p}, head {head}"
        await asyncio.sleep(0.05)


async def _assert_exactly_once(pool: asyncpg.Pool) -> None:
    seen = [r["seq"] for r in await pool.fetch("SELECT seq FROM audit_demo_seen ORDER BY seq")]
    assert seen == [r["seq"] for r in await pool.fetch("SELECT seq FROM events ORDER BY seq")]
    counts = {r["event_type"]: r["n"] for r in await pool.fetch("SELECT * FROM audit_demo_counts")}
    assert counts == {r["event_type"]: r["n"] for r in await pool.fetch(
        "SELECT event_type, count(*) AS n FROM events GROUP BY 1")}


async def _applied_up_to_checkpoint(pool: asyncpg.Pool, runner: CatchUp) -> None:
    """The view holds exactly the events up to the checkpoint: the page in flight left nothing behind."""
    p = await runner.position()
    expected = await pool.fetchval("SELECT count(*) FROM events WHERE (tx, seq) <= ($1::text::xid8, $2)",
                                   str(p.tx), p.seq)
    assert await pool.fetchval("SELECT count(*) FROM audit_demo_seen") == expected


async def test_cancelled_mid_page_or_between_pages_resumes_exactly_once(pool: asyncpg.Pool,
                                                                       demo_tables: None) -> None:
    """Cancel the task at a page's midpoint (its rows written, its checkpoint not) or while it waits for
    more events; each restart resumes exactly after the last committed page."""
    store = EventStore(pool)
    writing = asyncio.ensure_future(asyncio.gather(*[_run(store, f"k{n}-", PROGRAM) for n in range(4)]))
    rng = random.Random(7)
    mid_page = restarts = 0
    while not writing.done() or restarts < 6:
        paused = asyncio.Event()
        runner = CatchUp(store, "demo", [demo_projection(pause_at=rng.randint(1, 3), paused=paused)], page=7,
                         poll_interval=0.01)
        task = asyncio.create_task(runner.run())
        try:
            await asyncio.wait_for(paused.wait(), 1.0)
            mid_page += 1
        except TimeoutError:
            pass  # caught up before the pause page: the runner is waiting between pages
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _applied_up_to_checkpoint(pool, runner)
        restarts += 1
    await writing
    assert mid_page >= 3
    await _finish(CatchUp(store, "demo", [demo_projection()], page=7))
    await _assert_exactly_once(pool)


ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import asyncio, sys
from periodya import db
from periodya.eventstore import EventStore
from periodya.projections.catchup import CatchUp
from tests.integration.test_audit_catchup import demo_projection

async def main():
    pool = await db.connect_pool(sys.argv[1], min_size=1, max_size=3)
    runner = CatchUp(EventStore(pool), "demo", [demo_projection()], page=5, poll_interval=0.01)
    await runner.prepare()
    print("ready", flush=True)
    await runner.run()

asyncio.run(main())
"""


async def test_killed_process_resumes_exactly_once(database_url: str, pool: asyncpg.Pool, demo_tables: None) -> None:
    """SIGKILL the follower's process at random moments while writers write; restart it each time."""
    store = EventStore(pool)
    writing = asyncio.ensure_future(asyncio.gather(*[_run(store, f"j{n}-", PROGRAM * 3) for n in range(3)]))
    rng = random.Random(11)
    for _ in range(4):
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, database_url, cwd=ROOT,
                                                     stdout=asyncio.subprocess.PIPE)
        try:
            assert child.stdout is not None
            assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"ready"
            await asyncio.sleep(rng.uniform(0.0, 0.3))
        finally:
            child.kill()
            await child.wait()
    await writing
    runner = CatchUp(store, "demo", [demo_projection()], page=5)
    await _applied_up_to_checkpoint(pool, runner)
    await _finish(runner)
    await _assert_exactly_once(pool)


async def test_a_crash_mid_page_rolls_back_the_page_and_its_checkpoint(pool: asyncpg.Pool,
                                                                      demo_tables: None) -> None:
    store = EventStore(pool)
    await _run(store, "m-", PROGRAM)
    await _settled(pool)
    crashing = CatchUp(store, "demo", [demo_projection(crash_every=3)], page=5)
    await crashing.prepare()
    assert await crashing.step() == 5 and await crashing.step() == 5
    before = await crashing.position()
    with pytest.raises(Crash):
        await crashing.step()
    assert await crashing.position() == before  # the page's writes and its checkpoint rolled back together
    assert await pool.fetchval("SELECT count(*) FROM audit_demo_seen") == 10
    await _finish(CatchUp(store, "demo", [demo_projection()], page=5))
    await _assert_exactly_once(pool)


async def test_two_runners_with_one_name_never_apply_a_page_twice(pool: asyncpg.Pool, demo_tables: None) -> None:
    store = EventStore(pool)
    await _run(store, "n-", PROGRAM * 2)
    runners = [CatchUp(store, "demo", [demo_projection()], page=3) for _ in range(3)]
    await runners[0].prepare()
    await asyncio.gather(*[r.run_until_caught_up() for r in runners])
    await _finish(runners[0])
    await _assert_exactly_once(pool)


async def test_a_follower_schema_of_every_projection_equals_live(pool: asyncpg.Pool) -> None:
    """A full copy of the projections maintained by catch-up (not inline), crashing mid-page along the way."""
    store = EventStore(pool)
    modules = list(PROJECTIONS.values())
    writing = asyncio.ensure_future(asyncio.gather(*[_run(store, f"f{n}-", PROGRAM) for n in range(3)]))
    crashes = 0
    while not writing.done() or crashes < 5:
        await _settled(pool)
        crasher = demo_crasher(every=3)
        try:
            await CatchUp(store, "follower", [*modules, crasher], schema="follower", page=4).run_until_caught_up()
        except Crash:
            crashes += 1
        await asyncio.sleep(0.01)
    await writing
    await _finish(CatchUp(store, "follower", modules, schema="follower"))
    async with pool.acquire() as conn:
        for module in modules:
            for table in module.TABLES:
                diff = await diff_table(conn, "follower", table)
                assert diff.clean, diff
