"""End-to-end payout pipeline: N payouts from request to FINALIZED through the simulator, payouts/s per job.

One run, one fresh scratch database (dropped afterwards):
  1. seed: payees credited through the handlers (fund an escrow, release all of it to the payee);
  2. requests: N POST /api/payouts over HTTP to the API process (`periodya serve`, its group commit
     included), from a keep-alive aiohttp client in THIS process at --concurrency (32, as bench commands),
     each with its own Idempotency-Key and the service token (bench/_common.py payout_op) => the command
     throughput, on the same database in the same run;
  3. the jobs, as the scheduler runs them minus the cron waits: one loop per job, the two concurrent, as
     `periodya scheduler` runs each job as its own task (--schedule alternate: one loop { outbox ; webhooks }),
     through periodya.runners.execute.execute_job (its job_runs rows and job_finished log line included), the
     runbook's batches (50 / 200) unless --batch-outbox / --batch-webhooks, one set of loops unless
     --runners 2, until every accepted payout is FINALIZED; reconcile-pull and repair run only when progress stalls
     for --stall-seconds. --phases overlap (default): the runner loops start with the first request, as in
     production where requests keep arriving while the runners work; --phases sequential: all requests
     first, then the jobs (the earlier shape, to compare). The provider simulator (latency 0, autoSettle,
     settleDelayMs 0, paidRatio 1) and the API that takes the payout requests and receives the webhooks run
     as separate processes (`python -m periodya provider-sim`, `python -m periodya serve`), or in this
     process with --layout inproc; the runners always run in this process;
  4. figures: end to end payouts/s = N / (first request -> last FINALIZED), the split between the two
     phases, each job's items per busy second, the CPU each process used. Target >= 500 payouts/s end
     to end: PASS/MISS, never a non-zero exit for a miss. Checks: all N FINALIZED, the simulator's
     payoutsCreated == N, in-flight balances 0, the ledger sums to 0, cash moved by exactly N x amount.
     The default N = 10,000 took 1-1.5 minutes on a busy 2-core machine; the rates are steady from ~2,000 up;
  5. on a miss (or --profile): a second, instrumented pass (--profile-payouts) counting SQL round trips
     and their time per payout per job and per outbox step, pool waits, the provider call latency; then a
     smaller pass with the runner loop under cProfile (CPU time); then findings. The pools' connections are
     a counting subclass in every pass, inert (a flag test per statement) until then.

The bench's own HTTP client (phase 1) runs in this process beside the runners: it is not the system under
test, and costs ~0.2 ms of CPU per payout (the "this process" row of phase 1 in --phases sequential).

Measured (2026-11-25, 2-core machine shared with three other engineers' tests and benches, load average
1.7-7.7; other processes used 0.1-1 of the 2 cores; figures are low and noisy, compare ratios and CPU):
  * webhook intake group commit, A/B back to back, --payouts 3000 --phases overlap, four rounds (before =
    one transaction per provider event, commit f1aabd9's webhook_routes.py): API CPU per payout 1.22 /
    1.25 / 1.00 / 0.93 ms -> 0.82 / 0.83 / 0.74 / 0.66 ms, PostgreSQL 1.55 / 1.53 / 1.27 / 1.24 -> 1.08 /
    1.07 / 1.10 / 0.88 ms, all our processes + PostgreSQL 4.57 / 4.57 / 3.71 / 3.58 -> 3.50 / 3.47 / 3.30 /
    2.87 ms (-11% to -24%); end to end 227 / 190 / 288 / 273 -> 384 / 256 / 296 / 378 payouts/s.
  * default N = 10,000, back to back (load 4.1-4.8): end to end (payouts/s; CPU ms per payout, all ours)
      --phases overlap                      245  (requests 447/s, jobs tail 18 s; 3.77 ms)
      --phases sequential                   266  (phase 1 744/s, phase 2 414/s; 3.26 ms)
      --phases overlap --schedule per-job   293  (requests 333/s, tail 4 s; 3.96 ms; others used 0.7 core)
      --phases sequential --schedule per-job 420 (phase 1 1,180/s, phase 2 653/s; 3.44 ms; others 0.1 core)
    Overlapped, one alternating runner loop trails the requests (its ceiling 1 / (1/outbox + 1/webhooks));
    with a loop per job the jobs keep pace and the run is CPU-bound. A payout costs ~10-15% more CPU
    overlapped than sequential (smaller batches on every side while requests trickle in).
  * quiet machine (2026-11-25 01:24 UTC, load 1.1-1.5, nothing else running), N = 10,000, --phases overlap:
      --schedule per-job (now the default)  506  (requests 583/s; 3.43 ms per payout, whole run)  PASS
      --schedule alternate                  404  (requests 962/s; the one loop's ceiling 405/s)   MISS
      --schedule alternate --runners 2      480  (requests 514/s; 3.71 ms)                          MISS
    per-job is the production shape, hence the default since then. Three more default runs: 463, 471, 474.
    Then wake() coalescing 20 ms instead of 2 (a NOTIFY transaction for nearly every commit before):
    PostgreSQL CPU per payout 1.6 -> 1.2-1.4 ms; four default runs 498, 532, 446, 496 (median 497/s,
    3.3-3.8 ms per payout): on the line, not a reliable pass. --runners 2 (two loops per job): 391, 465
    (the jobs keep pace, tail 0.1 s, but smaller batches cost 4-4.7 ms per payout).
  * 2026-11-25 02:10-02:55 UTC, session 3, quiet machine (load 0.5-2.9, nothing else running). perf showed
    PostgreSQL's hottest functions were text comparisons of `= ANY($1)` sequential scans: the generic plans of
    the projections' and batches' key lookups, made while this fresh database's tables were small, were kept
    as the tables grew (pg_stat_statements: SELECT * FROM payouts WHERE payout_id = ANY, 5.4 ms per call at
    ~45 rows). They are key probes now (projections/rows.fetch_by_keys). A/B against the earlier commit,
    alternating, same machine (end to end payouts/s; PostgreSQL ms per payout; all ms per payout):
      before  455, 434, 521, 438, 531   (PostgreSQL 1.49-1.60; all 3.25-4.03)
      after   569, 524, 594, 552, 685   (PostgreSQL 0.88-0.97; all 2.54-3.34)
    and the cost per payout no longer grows with N (3,000 / 10,000 / 20,000: 3.17 / 3.11 / 2.87 ms).
    Three default runs back to back on the final code: 608, 664, 618 PASS (2.85 ms per payout: PostgreSQL
    0.86, this process 0.88, API 0.71, simulator 0.39). Later, with the machine ~20% slower (the simulator's
    own CPU per payout 0.42-0.47 ms, which the change does not touch): 496, 546, 551, 576, 540, 565; of 23
    default runs of the fixed code that day, two were under 500 (475, 496), both in such slow spells.
    Tried again and not kept, A/B alternating: uvloop in
    every process (537/633/605 vs 555/575/632 with asyncio: no difference above the noise); --runners 2
    (573, 607 vs 475, 619: the same within the noise, now that a smaller batch no longer costs a scan).
  * earlier, on the busy machine: MISS. At 3.3-4.0 ms per payout, 2 idle cores cap the pipeline near
    500-600/s, and we never had both cores. What is left per payout is the runners' transactions
    (runners + bench client ~1.1-1.2 ms), PostgreSQL (~0.9-1.3 ms), the API's HTTP work (~0.7-0.8 ms)
    and the simulator (~0.4 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import structlog

from bench import _common as c
from bench._pipeline_parts import (
    API_KEY,
    INSTRUMENTS,
    SCHEDULER_POOL,
    SERVICE_TOKEN,
    SIM_KNOBS,
    WEBHOOK_SECRET,
    CountingConnection,
    Parts,
    TimedProvider,
    outbox_steps,
    same_process,
    separate_processes,
)
from bench._pipeline_pass import AMOUNT, Context, Pass, phases_text, run_pass, shape_text
from periodya import db
from periodya.config import Settings
from periodya.deps import Deps
from periodya.domain import accounts, escrow
from periodya.errors import ConfigError
from periodya.eventstore import EventStore
from periodya.handlers import platform
from periodya.handlers.unit_of_work import Meta, run_command
from periodya.logging import configure
from periodya.provider.stripe_adapter import StripePayoutsClient
from periodya.runners import outbox

TARGET_E2E = 500
DEFAULT_PAYOUTS = 10_000
DEFAULT_NOTE = ("note: 10,000 payouts took 1-1.5 minutes on a busy 2-core machine (less on a quiet one); the "
                "rates are steady from ~2,000 payouts up, so --payouts 2000 gives "
                "the same figures in under a minute.")
CREDIT = 10**12  # per payee: never the limit
META = Meta(actor="bench:pipeline")


# ============================================================================================
# Setup and checks
# ============================================================================================

async def seed(store: EventStore, payees: list[str]) -> None:
    gate = asyncio.Semaphore(8)

    async def one(payee: str) -> None:
        eid = f"seed_{payee}"
        async with gate:
            await run_command(store, META, lambda u: platform.fund_escrow(u, escrow.FundEscrow(eid, CREDIT, "USD")))
            await run_command(store, META, lambda u: platform.release_escrow(
                u, escrow.ReleaseEscrow(eid, payee, CREDIT, 0)))

    await asyncio.gather(*(one(p) for p in payees))


async def sim_get(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as r:
        return dict(await r.json())


async def checks(pool: asyncpg.Pool, http: aiohttp.ClientSession, parts: Parts, passes: list[Pass], payees: int,
                 *, total: int | None = None) -> list[tuple[str, str, bool]]:
    """Every request of these passes answered 201 and its payout FINALIZED, and the whole database
    consistent (`total` payouts so far)."""
    n = sum(p.n for p in passes)
    ids = [i for p in passes for i in p.ids]
    total = n if total is None else total
    answers = sum((p.statuses for p in passes), Counter()) + sum((p.errors for p in passes), Counter())
    statuses = {r["status"]: r["count"] for r in await pool.fetch(
        "SELECT status, count(*) FROM payouts WHERE payout_id = ANY($1::text[]) GROUP BY status", ids)}
    stats = await sim_get(http, f"{parts.sim_url}/_sim/stats")
    inflight = await pool.fetchrow(
        "SELECT coalesce(sum(balance), 0) AS total, count(*) FILTER (WHERE balance <> 0) AS nonzero "
        "FROM balances WHERE account LIKE 'inflight:%'")
    sums = await pool.fetch("SELECT currency, sum(balance) AS total FROM balances GROUP BY currency ORDER BY 1")
    cash = await pool.fetchval("SELECT balance FROM balances WHERE account = $1 AND currency = 'USD'", accounts.CASH)
    pending = await pool.fetchval("SELECT count(*) FROM provider_events WHERE applied_seq IS NULL")
    expected_cash = -payees * CREDIT + total * AMOUNT
    shown = " ".join(f"{k}={v:,}" for k, v in sorted(statuses.items()))
    return [
        (f"all {n:,} POST /api/payouts answered 201", " ".join(f"{k}x{v:,}" for k, v in sorted(
            answers.items(), key=str)), answers.get(201, 0) == n == sum(answers.values()) == len(set(ids))),
        (f"all {n:,} payouts FINALIZED", shown or "none", statuses.get("FINALIZED", 0) == n == sum(statuses.values())),
        (f"simulator payoutsCreated == {total:,}", f"{stats.get('payoutsCreated', 0):,} (replays "
         f"{stats.get('idempotentReplays', 0)}, webhooks sent {stats.get('webhooksSent', 0):,}, failed "
         f"{stats.get('webhooksFailed', 0)})", stats.get("payoutsCreated") == total),
        ("in-flight balances 0", f"sum {inflight['total']}, {inflight['nonzero']} accounts non-zero",
         inflight["total"] == 0 and inflight["nonzero"] == 0),
        ("ledger sums to 0 per currency", ", ".join(f"{r['currency']} {r['total']}" for r in sums) or "empty",
         all(r["total"] == 0 for r in sums)),
        (f"cash moved by exactly {total:,} x {AMOUNT}", f"cash:platform {cash:,} (expected {expected_cash:,})",
         cash == expected_cash),
        ("no provider event left unapplied", str(pending), pending == 0),
    ]


# ============================================================================================
# The run
# ============================================================================================

@dataclass
class Figures:
    version: str = ""
    where: list[str] = field(default_factory=list)
    main: Pass | None = None
    checks: list[tuple[str, str, bool]] = field(default_factory=list)
    profiled: Pass | None = None
    cprofiled: Pass | None = None
    profile_checks: list[tuple[str, str, bool]] = field(default_factory=list)
    profile_path: str = ""
    sql: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    acquires: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, list[float]] = field(default_factory=dict)
    provider_ms: list[float] = field(default_factory=list)
    log_lines: dict[str, int] = field(default_factory=dict)


async def run(args: argparse.Namespace, workdir: Path) -> Figures:
    figures = Figures()
    server = c.server_url()
    async with c.scratch_database(server, "pipeline") as url, AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)))
        settings = Settings.from_env({"DATABASE_URL": url}).with_overrides(
            webhook_secret=WEBHOOK_SECRET, provider_api_key=API_KEY, log_level=args.log_level,
            service_token=SERVICE_TOKEN)
        if args.layout == "procs":
            parts = await stack.enter_async_context(separate_processes(url, workdir, args.log_level))
        else:
            parts = await stack.enter_async_context(same_process(url, settings))
        async with http.post(f"{parts.sim_url}/_sim/config",
                             json={**SIM_KNOBS, "webhookUrl": f"{parts.api_url}/api/webhooks/provider"}) as r:
            if r.status != 200:
                raise ConfigError(f"the simulator refused its config: {r.status} {await r.text()}")
        settings = settings.with_overrides(provider_url=parts.sim_url)
        # CountingConnection counts nothing until the instrumented pass switches it on (a flag test per
        # statement); one set of pools keeps the connection count low on a shared server
        run_pool = await db.connect_pool(url, max_size=args.runner_pool, connection_class=CountingConnection)
        stack.push_async_callback(run_pool.close)
        provider = await stack.enter_async_context(StripePayoutsClient(parts.sim_url, API_KEY, timeout=10))
        stalled = settings.with_overrides(sent_stuck_minutes=args.stall_seconds / 60,
                                          sending_stuck_minutes=args.stall_seconds / 60)
        run_store = EventStore(run_pool)
        session = await stack.enter_async_context(c.client_session(parts.api_url, args.concurrency))
        ctx = Context(args, url, [f"payee_{i:04d}" for i in range(args.payees)], session, run_store,
                      Deps(run_store, provider, settings), Deps(run_store, provider, stalled),
                      c.CpuMeter(parts.pids, c.database_name(url)), run_pool)
        figures.version = await c.server_version(run_pool)
        figures.where = [f"database:    {c.describe_server(server)}; scratch database {c.database_name(url)}",
                         *parts.where,
                         f"requests:    this process pid {os.getpid()}: POST /api/payouts over HTTP to the API "
                         f"({parts.api_url}), keep-alive aiohttp client, concurrency {args.concurrency}, "
                         f"Idempotency-Key + service token",
                         f"shape:       {phases_text(args)}",
                         f"runners:     this process: {args.runners} x {shape_text(args)} of execute_job(outbox "
                         f"{args.batch_outbox}) ; execute_job(webhooks {args.batch_webhooks}), pool max "
                         f"{args.runner_pool}, StripePayoutsClient -> the simulator"]
        if args.payouts == DEFAULT_PAYOUTS:
            print(DEFAULT_NOTE)
        for line in figures.where:
            print(line)
        print(f"{c.machine_load()} before the run", flush=True)
        await seed(ctx.store, ctx.payees)
        await c.settle(run_pool)
        figures.main = await run_pass(ctx, args.payouts, "main")
        figures.checks = await checks(run_pool, http, parts, [figures.main], args.payees)
        missed = figures.main.e2e_rate < TARGET_E2E or figures.main.timed_out
        if (args.profile or (missed and not args.no_profile)) and args.profile_payouts > 0:
            print(f"profiling: a second pass of {args.profile_payouts:,} payouts, instrumented ...", flush=True)
            figures.profiled, figures.cprofiled = await profile_pass(ctx, args, figures, workdir)
            both = figures.profiled.n + figures.cprofiled.n
            figures.profile_checks = await checks(run_pool, http, parts, [figures.profiled, figures.cprofiled],
                                                  args.payees, total=args.payouts + both)
        for log in parts.logs:
            figures.log_lines[log.name] = _count_levels(log)
    return figures


async def profile_pass(ctx: Context, args: argparse.Namespace, figures: Figures, workdir: Path) -> list[Pass]:
    """Two more passes: one with every statement and pool wait counted per job and the outbox's steps and
    provider calls timed; then a smaller one with phase 2 under cProfile (apart, so that the profiler's
    own overhead does not inflate the SQL timings)."""
    store = EventStore(c.TimedPool(ctx.run_pool, INSTRUMENTS))  # type: ignore[arg-type]
    provider = TimedProvider(ctx.deps.provider)
    pctx = Context(args, ctx.url, ctx.payees, ctx.session, store,
                   Deps(store, provider, ctx.deps.settings), Deps(store, provider, ctx.stalled_deps.settings),
                   ctx.meter, ctx.run_pool)
    INSTRUMENTS.clear()
    INSTRUMENTS.on = True
    try:
        with outbox_steps():
            counted = await run_pass(pctx, args.profile_payouts, "prof")
    finally:
        INSTRUMENTS.on = False
    figures.sql = dict(INSTRUMENTS.statements)
    figures.acquires = dict(INSTRUMENTS.acquires)
    figures.steps = dict(INSTRUMENTS.steps)
    figures.provider_ms = sorted(INSTRUMENTS.provider_ms)
    profiler = cProfile.Profile(time.process_time)  # CPU time: under load, wall time charges preemption to syscalls
    profiled = await run_pass(ctx, max(1, args.profile_payouts // 2), "profc", profiler)
    figures.profile_path = str(workdir / "runners.pstats")
    profiler.dump_stats(figures.profile_path)
    if args.profile_out:
        profiler.dump_stats(args.profile_out)
    return [counted, profiled]


def _count_levels(log: Path) -> int:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return -1
    return sum(1 for line in text.splitlines() if '"level": "warning"' in line or '"level": "error"' in line)




def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--payouts", type=int, default=DEFAULT_PAYOUTS,
                        help=f"payouts to drive (default {DEFAULT_PAYOUTS:,})")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="HTTP request workers (default 32, as bench commands)")
    parser.add_argument("--phases", choices=("overlap", "sequential"), default="overlap",
                        help="overlap: requests and jobs at the same time, as in production (default); "
                             "sequential: all requests first, then the jobs (the earlier shape, to compare)")
    parser.add_argument("--payees", type=int, default=64, help="payees the requests rotate over (default 64)")
    parser.add_argument("--batch-outbox", type=int, default=outbox.BATCH,
                        help=f"outbox batch (default {outbox.BATCH}, the runbook's)")
    parser.add_argument("--batch-webhooks", type=int, default=200, help="webhooks batch (default 200, the runbook's)")
    parser.add_argument("--runners", type=int, default=1, choices=(1, 2, 3, 4),
                        help="concurrent runner loops (default 1)")
    parser.add_argument("--schedule", choices=("alternate", "per-job"), default="per-job",
                        help="per-job (default): each job in its own loop, the two concurrent, as `periodya scheduler` "
                             "runs each job as its own task; alternate: each runner loop runs outbox then webhooks")
    parser.add_argument("--runner-pool", type=int, default=SCHEDULER_POOL,
                        help=f"runners' pool max size (default {SCHEDULER_POOL}, as `periodya scheduler`)")
    parser.add_argument("--layout", choices=("procs", "inproc"), default="procs",
                        help="simulator and webhook API as separate processes (default) or in this process")
    parser.add_argument("--stall-seconds", type=float, default=3.0,
                        help="no progress this long: run reconcile-pull and repair (default 3)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up phase 2 after this (default 600 s)")
    parser.add_argument("--log-level", default="info", help="log level of every part (default info, as shipped)")
    parser.add_argument("--profile", action="store_true", help="run the instrumented pass even on a PASS")
    parser.add_argument("--no-profile", action="store_true", help="never run the instrumented pass")
    parser.add_argument("--profile-payouts", type=int, default=1_000,
                        help="payouts of the instrumented pass (default 1000; the cProfile pass takes half as many)")
    parser.add_argument("--profile-out", help="also save the runners' cProfile stats (pstats format) here")
    args = parser.parse_args(argv)
    if min(args.payouts, args.concurrency, args.payees, args.batch_outbox, args.batch_webhooks,
           args.runner_pool) < 1:
        parser.error("--payouts, --concurrency, --payees, the batches and --runner-pool must be positive")
    from bench._pipeline_report import report  # it reads this module's target and figures

    with tempfile.TemporaryDirectory(prefix="periodya-bench-pipeline-") as tmp:
        workdir = Path(tmp)
        log = (workdir / "bench.log").open("w")
        try:
            configure(args.log_level)  # this process logs like `periodya scheduler`, into a file, not the report
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(log))
            figures = asyncio.run(run(args, workdir))
        finally:
            log.close()
        figures.log_lines["bench.log (runners)"] = _count_levels(workdir / "bench.log")
        report(figures, args)
    return 0
