"""`bench ops --profile` (and on a miss): where health's and the full sentinel's time goes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench import _common as c
from periodya.eventstore.hashing import chain_hash
from periodya.handlers.health import counts, health
from periodya.runners import JOBS
from periodya.runners.sentinel import run_scope
from periodya.runners.sentinel_checks import CHECKS, LOG_BALANCES

JOBS_LATERAL = """
SELECT r.job, r.mode, r.trigger, r.started_at, r.finished_at, r.ok, r.summary, r.error
  FROM unnest($1::text[], $2::text[]) AS k(job, mode)
 CROSS JOIN LATERAL (SELECT * FROM job_runs j WHERE j.job = k.job AND j.mode IS NOT DISTINCT FROM k.mode
                      ORDER BY j.started_at DESC LIMIT 1) r"""


async def timed_call(call: Callable[[], Awaitable[object]], n: int = 20) -> float:
    """Median milliseconds of `await call()` over n runs."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2] * 1000


async def timed(pool: asyncpg.Pool, sql: str, *params: Any, n: int = 20) -> float:
    """Median milliseconds of `sql` over n runs."""
    return await timed_call(lambda: pool.fetch(sql, *params), n)


async def profile_health(pool: asyncpg.Pool, deps: Any) -> None:
    print("\nhealth, server side (in-process, the same handler and SQL):")
    times = []
    for _ in range(50):
        started = time.perf_counter()
        await health(deps)
        times.append(time.perf_counter() - started)
    times.sort()
    print(f"  handler p50 {times[len(times) // 2] * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms")
    jobs_sql = ("SELECT DISTINCT ON (job, mode) job, mode, trigger, started_at, finished_at, ok, summary, error "
                "FROM job_runs ORDER BY job, mode, started_at DESC")
    missing_sql = ("SELECT a.alert_id, a.subject, a.raised_at, a.details->>'providerPayoutId' AS provider_payout_id "
                   "FROM alerts a WHERE a.code = 'FINALIZE_MISSING' AND a.status <> 'RESOLVED' ORDER BY a.raised_at")
    keys = [(j, None) for j in JOBS if j != "sentinel"] + [("sentinel", "recent"), ("sentinel", "full")]
    lateral_args = ([k[0] for k in keys], [k[1] for k in keys])
    c.print_table(["health query", "median ms"], [
        ["counts (_COUNTS)", f"{await timed_call(lambda: counts(deps)):.2f}"],
        ["finalizeMissing", f"{await timed(pool, missing_sql):.2f}"],
        [f"jobs: DISTINCT ON over job_runs ({await pool.fetchval('SELECT count(*) FROM job_runs'):,} rows)",
         f"{await timed(pool, jobs_sql, n=5):.2f}"],
        ["what-if jobs: LATERAL ... LIMIT 1 per known (job, mode), existing index",
         f"{await timed(pool, JOBS_LATERAL, *lateral_args):.2f}"],
    ], title="  where the health request's SQL time goes")
    same = [tuple(r) for r in await pool.fetch(JOBS_LATERAL, *lateral_args)]
    assert sorted(same, key=str) == sorted((tuple(r) for r in await pool.fetch(jobs_sql)), key=str), \
        "the what-if query must return the same rows"
    plan = await explain(pool, jobs_sql)
    print("  EXPLAIN ANALYZE jobs:")
    for line in plan:
        print("    " + line)


async def profile_sentinel(pool: asyncpg.Pool, deps: Any) -> None:
    print("\nsentinel full, check by check (same scope, each run alone):")
    started = time.perf_counter()
    await run_scope(deps, full=True)
    scope_s = time.perf_counter() - started
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")
        all_streams = time.perf_counter()
        await conn.fetch("SELECT DISTINCT ON (stream_id) stream_id, tx::text::bigint AS tx, seq FROM events "
                         "WHERE (tx, seq) > ('0'::xid8, 0) AND tx < pg_snapshot_xmin(pg_current_snapshot())")
        all_streams_s = time.perf_counter() - all_streams
    rows = await check_times(deps, full=True)
    c.print_table(["step", "seconds", "examined", "findings"],
                  [[n, f"{s:.2f}", f"{e:,}", f] for n, s, e, f in sorted(rows, key=lambda r: -r[1])]
                  + [["_scope (streams since the checkpoint; full mode does not use them)", f"{scope_s:.2f}", "", ""],
                     ["_scope with no checkpoint (a first run: every stream of the log)", f"{all_streams_s:.2f}",
                      "", ""]])
    if max(rows, key=lambda r: r[1])[0] == "hash_chain":
        c.print_table(["hash_chain, full", "seconds"], [[label, f"{sec:.2f}"] for label, sec in
                                                       await hash_chain_split(pool)],
                      title="where hash_chain's time goes (1 connection, this process)")
    for label, sql in [
        ("balance_drift (full: every LedgerGroupPosted's entries, from the log's jsonb)",
         LOG_BALANCES.format(where="")),
        ("ledger_unbalanced (full: every group)", "SELECT group_id, currency, sum(debit), sum(credit), count(*) "
         "FROM ledger_entries GROUP BY group_id, currency"),
    ]:
        plan = await explain(pool, sql)
        print(f"\nEXPLAIN ANALYZE {label}:")
        for line in [*plan[:8], *[ln for ln in plan[8:] if "Execution Time" in ln]]:
            print("    " + line)



async def check_times(deps: Any, full: bool) -> list[tuple[str, float, int, int]]:
    """Each sentinel check alone on the same scope: (name, seconds, examined, findings)."""
    scope, _ = await run_scope(deps, full=full)
    rows = []
    for check in CHECKS:
        started = time.perf_counter()
        async with deps.store.pool.acquire() as conn:
            result = await check(deps, conn, scope)
        rows.append((check.__name__, time.perf_counter() - started, result.examined, len(result.findings)))
    return rows


async def explain(pool: asyncpg.Pool, sql: str, *args: Any) -> list[str]:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
    return [r[0] for r in rows]


async def hash_chain_split(pool: asyncpg.Pool) -> list[tuple[str, float]]:
    """Where the full hash-chain check's time goes, and two what-ifs that check the same things."""
    cols = "seq, stream_id, stream_version, event_type, data, metadata, recorded_at, prev_hash, hash"
    out = []

    async def scan(label: str, order: str, compute: bool) -> None:
        started = time.perf_counter()
        bad = 0
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            async for row in conn.cursor(f"SELECT {cols} FROM events ORDER BY {order}", prefetch=2000):
                if compute:
                    bad += chain_hash(bytes(row["prev_hash"]), row["stream_id"], row["stream_version"],
                                      row["event_type"], row["recorded_at"], row["data"], row["metadata"]
                                      ) != bytes(row["hash"])
        out.append((label + (f" ({bad} mismatches)" if compute else ""), time.perf_counter() - started))

    await scan("read every event in (stream_id, stream_version) order (as verify_chains does)",
               "stream_id, stream_version", False)
    await scan("  + recompute each hash in Python (= the check)", "stream_id, stream_version", True)
    await scan("what-if: read in seq (physical) order", "seq", False)
    await scan("what-if:   + recompute each row's hash from its own prev_hash", "seq", True)
    links = """SELECT count(*) FROM (SELECT stream_version, prev_hash, lag(hash) OVER w AS prev,
                  lag(stream_version) OVER w AS prev_version FROM events WINDOW w AS (PARTITION BY stream_id
                  ORDER BY stream_version)) x
                WHERE prev_hash <> coalesce(prev, decode(repeat('00', 32), 'hex'))
                   OR stream_version <> coalesce(prev_version, 0) + 1"""
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")
        broken = await conn.fetchval(links)
    out.append((f"what-if:   + links and version gaps in SQL (window over the index; {broken} broken)",
                time.perf_counter() - started))
    return out
