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
import contextvars
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import structlog

from bench import _common as c
from bench.commands import _machine_busy, _postgres_pids, _proc_cpu, statement_key
from periodya import db
from periodya.config import Settings
from periodya.domain import accounts, escrow
from periodya.errors import ConfigError
from periodya.eventstore import EventStore
from periodya.handlers import platform
from periodya.handlers.unit_of_work import Meta, run_command
from periodya.logging import configure
from periodya.provider.stripe_adapter import StripePayoutsClient
from periodya.runners import outbox
from periodya.runners.base import Deps
from periodya.runners.execute import execute_job

TARGET_E2E = 500
DEFAULT_PAYOUTS = 10_000
DEFAULT_NOTE = ("note: 10,000 payouts took 1-1.5 minutes on a busy 2-core machine (less on a quiet one); the "
                "rates are steady from ~2,000 payouts up, so --payouts 2000 gives "
                "the same figures in under a minute.")
API_KEY = "sk_bench_pipeline"
WEBHOOK_SECRET = "whsec_bench_pipeline"
SERVICE_TOKEN = "bench-pipeline-service-token"
AMOUNT = 100
CREDIT = 10**12  # per payee: never the limit
META = Meta(actor="bench:pipeline")
REPO = Path(__file__).resolve().parent.parent
SIM_KNOBS: dict[str, Any] = {
    "latencyMs": 0, "autoSettle": True, "settleDelayMs": 0, "paidRatio": 1.0, "errorRate": 0.0,
    "rejectCreateRate": 0.0, "dropAfterCreateRate": 0.0, "webhookDropRate": 0.0, "webhookDuplicateRate": 0.0,
    "webhookDelayMs": 0, "badSignatureRate": 0.0}
SCHEDULER_POOL = 10  # `periodya scheduler` / `serve`: db.connect_pool's default max size
FINALIZING = {"webhooks": "applied", "reconcile-pull": "paid"}  # the outcome word that means "now FINALIZED"


# ============================================================================================
# Instruments (the profiling pass only): SQL round trips and pool waits per job, outbox steps, provider calls
# ============================================================================================

_job: contextvars.ContextVar[str] = contextvars.ContextVar("bench_pipeline_job", default="other")


@dataclass
class Instruments:
    on: bool = False
    statements: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    acquires: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    steps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    provider_ms: list[float] = field(default_factory=list)

    def statement(self, query: str, elapsed: float) -> None:
        if self.on:
            entry = self.statements[(_job.get(), statement_key(query))]
            entry[0] += 1
            entry[1] += elapsed

    def acquired(self, waited: float) -> None:
        entry = self.acquires[_job.get()]
        entry[0] += 1
        entry[1] += waited

    def released(self, elapsed: float) -> None:
        pass  # not counted here

    def clear(self) -> None:
        for table in (self.statements, self.acquires, self.steps):
            table.clear()
        self.provider_ms.clear()


INSTRUMENTS = Instruments()


class CountingConnection(c.TimedConnection):
    """Every statement round trip timed into INSTRUMENTS, filed under the job in `_job`."""

    instruments = INSTRUMENTS


class TimedProvider:
    """The provider client with create_payout timed (the outbox's one provider call per payout)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def create_payout(self, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._inner.create_payout(*args)
        finally:
            INSTRUMENTS.provider_ms.append((time.perf_counter() - started) * 1000)


CLAIM_STEP, SEND_STEP, RECORD_STEP = ("outbox: claim batch (SENDING)", "outbox: provider calls",
                                     "outbox: record batch (SENT)")
OUTBOX_STEPS = (CLAIM_STEP, SEND_STEP, RECORD_STEP)
INTAKE = "webhook intake (API)"


@contextmanager
def outbox_steps() -> Iterator[None]:
    """Time the outbox's three batch steps and file their SQL under their own names (bench-only patch,
    undone after)."""
    originals = {"claim_batch": outbox.claim_batch, "send_batch": outbox.send_batch,
                 "record_batch": outbox.record_batch}
    names = dict(zip(originals, OUTBOX_STEPS, strict=True))

    def timed(attr: str) -> Any:
        inner, name = originals[attr], names[attr]

        async def step(*args: Any) -> Any:
            token, started = _job.set(name), time.perf_counter()
            try:
                return await inner(*args)
            finally:
                _step(name, started)
                _job.reset(token)

        return step

    for attr in originals:
        setattr(outbox, attr, timed(attr))
    try:
        yield
    finally:
        for attr, fn in originals.items():
            setattr(outbox, attr, fn)


def _step(name: str, started: float) -> None:
    entry = INSTRUMENTS.steps[name]
    entry[0] += 1
    entry[1] += time.perf_counter() - started


# ============================================================================================
# Where the simulator and the webhook-receiving API run
# ============================================================================================

@dataclass
class Parts:
    sim_url: str
    api_url: str
    where: list[str]
    pids: dict[str, int] = field(default_factory=dict)  # separate processes by role
    logs: list[Path] = field(default_factory=list)


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERIODYA_") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


async def _spawn(http: aiohttp.ClientSession, argv: list[str], env: dict[str, str], log: Path,
                 probe: str) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "periodya", *argv, cwd=REPO, env=env,
                                                    stdout=out, stderr=asyncio.subprocess.STDOUT)
    failure = await c.await_ready(proc, http, probe, seconds=60)
    if failure is None:
        return proc
    await c.stop_process(proc, grace=15)
    raise ConfigError(f"`periodya {argv[0]}` {failure}: {_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-1500:]


@asynccontextmanager
async def separate_processes(url: str, http: aiohttp.ClientSession, workdir: Path,
                             log_level: str) -> AsyncIterator[Parts]:
    sim_port, api_port = c.free_port(), c.free_port()
    sim_url, api_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{api_port}"
    sim_log, api_log = workdir / "provider-sim.log", workdir / "serve.log"
    procs: list[asyncio.subprocess.Process] = []
    try:
        sim = await _spawn(http, ["provider-sim", "--host", "127.0.0.1", "--port", str(sim_port)],
                           _child_env(PERIODYA_WEBHOOK_SECRET=WEBHOOK_SECRET, PERIODYA_PROVIDER_API_KEY=API_KEY,
                                      PERIODYA_LOG_LEVEL=log_level), sim_log, f"{sim_url}/_sim/config")
        procs.append(sim)
        api = await _spawn(http, ["serve", "--host", "127.0.0.1", "--port", str(api_port)],
                           _child_env(DATABASE_URL=url, PERIODYA_WEBHOOK_SECRET=WEBHOOK_SECRET,
                                      PERIODYA_SERVICE_TOKEN=SERVICE_TOKEN, PERIODYA_LOG_LEVEL=log_level),
                           api_log, f"{api_url}/livez")
        procs.append(api)
        yield Parts(sim_url, api_url, [
            f"simulator:   separate process pid {sim.pid}: python -m periodya provider-sim ({sim_url})",
            f"API:         separate process pid {api.pid}: python -m periodya serve ({api_url}; its own pool, "
            f"max {SCHEDULER_POOL}), receives POST /api/payouts and POST /api/webhooks/provider"],
            {"simulator": sim.pid, "API": api.pid}, [sim_log, api_log])
    finally:
        for proc in reversed(procs):
            await c.stop_process(proc, grace=15)


@asynccontextmanager
async def same_process(url: str, settings: Settings) -> AsyncIterator[Parts]:
    from aiohttp import web

    from periodya.http.app import create_app
    from periodya.provider.simulator import running_simulator

    @web.middleware
    async def intake(request: web.Request, handler: Any) -> web.StreamResponse:
        # its SQL is counted as the route's in the instrumented pass (a group commit's batch task runs in a
        # fresh context: its SQL is filed under "other")
        token = _job.set(INTAKE if request.path.startswith("/api/webhooks") else "request")
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            _job.reset(token)

    api_pool = await db.connect_pool(url, max_size=SCHEDULER_POOL, connection_class=CountingConnection)
    app = create_app(settings, api_pool)
    app.middlewares.insert(0, intake)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        api_url = f"http://{host}:{port}"
        async with running_simulator(API_KEY, WEBHOOK_SECRET, config=SIM_KNOBS) as sim_url:
            yield Parts(sim_url, api_url, [
                f"simulator:   in this process (running_simulator, {sim_url})",
                f"API:         in this process (create_app + AppRunner, {api_url}; its own pool, max "
                f"{SCHEDULER_POOL}), receives POST /api/payouts and POST /api/webhooks/provider"])
    finally:
        await runner.cleanup()
        await api_pool.close()


# ============================================================================================
# CPU accounting (/proc, Linux)
# ============================================================================================

class Meter:
    def __init__(self, pids: dict[str, int], database: str) -> None:
        self.pids, self.database = pids, database

    def snapshot(self) -> dict[str, float]:
        pg = _postgres_pids(self.database)
        out = {"this process": time.process_time(), **{k: _proc_cpu(p) for k, p in self.pids.items()},
               "PostgreSQL": sum(_proc_cpu(p) for p in pg) if pg else float("nan"), "machine": _machine_busy()}
        out["wall"] = time.perf_counter()
        return out

    @staticmethod
    def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """CPU seconds per part over the window (and the window's wall seconds)."""
        return {k: after[k] - before[k] for k in before}


# ============================================================================================
# One pass: request N, then settle them all
# ============================================================================================

@dataclass
class Tally:
    runs: int = 0
    items: int = 0
    skipped: int = 0
    busy: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


@dataclass
class Pass:
    n: int
    overlap: bool = True  # requests and jobs at the same time (else one phase after the other)
    request: c.Result | None = None
    request_s: float = 0.0  # first request sent -> last answer received
    settle_s: float = 0.0  # last answer received -> last FINALIZED (sequential: the whole of phase 2)
    idle_s: float = 0.0
    jobs: dict[str, Tally] = field(default_factory=lambda: {"outbox": Tally(), "webhooks": Tally()})
    finalized: int = 0
    timed_out: bool = False
    ids: list[str] = field(default_factory=list)  # the payout ids the API answered 201 with
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_request: dict[str, float] = field(default_factory=dict)
    cpu_settle: dict[str, float] = field(default_factory=dict)

    @property
    def e2e_s(self) -> float:
        return self.request_s + self.settle_s

    @property
    def jobs_s(self) -> float:
        """The jobs' window: overlapped, from the first request; sequential, from the last answer."""
        return self.e2e_s if self.overlap else self.settle_s

    @property
    def settled(self) -> int:
        """Payouts that made it to FINALIZED: all n, unless phase 2 timed out."""
        return min(self.finalized, self.n) if self.timed_out else self.n

    @property
    def e2e_rate(self) -> float:
        return self.settled / self.e2e_s if self.e2e_s > 0 else 0.0


@dataclass
class Context:
    args: argparse.Namespace
    url: str
    payees: list[str]
    session: aiohttp.ClientSession  # keep-alive client of the API process
    store: EventStore
    deps: Deps
    stalled_deps: Deps
    meter: Meter
    run_pool: asyncpg.Pool


async def finalized_count(pool: Any, ids: list[str]) -> int:
    return int(await pool.fetchval(
        "SELECT count(*) FROM payouts WHERE status = 'FINALIZED' AND payout_id = ANY($1::text[])", ids))


async def run_pass(ctx: Context, n: int, label: str, profiler: cProfile.Profile | None = None) -> Pass:
    """Drive n payouts over HTTP (POST /api/payouts) and run the jobs until every payout the API accepted
    is FINALIZED. --phases overlap (default): the runner loops start with the first request, as in the
    real system, where requests keep arriving while the runners work; sequential: phase 1 (all requests)
    then phase 2 (the jobs). `profiler`, when given, runs while the jobs run."""
    args = ctx.args
    result = Pass(n, overlap=args.phases == "overlap")
    requests_done = asyncio.Event()
    op = c.payout_op(ctx.session, SERVICE_TOKEN, ctx.payees, AMOUNT, result.statuses, result.errors,
                     f"{label}-{uuid.uuid4().hex[:8]}", lambda body: result.ids.append(body["payoutId"]))
    target = [n]  # the payouts to see FINALIZED: n, or what the API accepted once every answer is in
    marks: dict[str, Any] = {}

    async def requests() -> None:
        result.request = await c.drive_async(op, args.concurrency, count=n)
        marks["requested"] = time.perf_counter()
        marks["middle"] = ctx.meter.snapshot()
        target[0] = len(result.ids)
        requests_done.set()

    before = ctx.meter.snapshot()
    started = time.perf_counter()
    sender = asyncio.get_running_loop().create_task(requests())
    if not result.overlap:
        await sender
    last = [started]  # when the newest finalize came back
    done = asyncio.Event()
    jobs = result.jobs

    async def job(name: str, batch: int, deps: Deps) -> int:
        tally = jobs.setdefault(name, Tally())
        token = _job.set(name)
        t = time.perf_counter()
        try:
            out = await execute_job(deps, name, batch=batch, trigger="bench")
        except Exception as exc:  # recorded in job_runs by execute_job; the loop keeps going like the scheduler
            tally.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            out = {"processed": 0, "skipped": 0, "outcomes": {}}
        finally:
            _job.reset(token)
        now = time.perf_counter()
        tally.runs += 1
        tally.busy += now - t
        tally.items += out["processed"]
        tally.skipped += out["skipped"]
        tally.outcomes.update(out["outcomes"])
        finalizing = out["outcomes"].get(FINALIZING.get(name, ""), 0)
        if finalizing:
            result.finalized += finalizing
            last[0] = now
        return int(out["processed"])

    async def confirm() -> None:
        if requests_done.is_set() and await finalized_count(ctx.run_pool, result.ids) >= target[0]:
            done.set()

    batches = {"outbox": args.batch_outbox, "webhooks": args.batch_webhooks}
    progress = [time.perf_counter()]  # when any loop last did work

    async def loop(names: tuple[str, ...]) -> None:
        checked, rescued = 0.0, 0.0
        while not done.is_set():
            worked = 0
            for name in names:
                worked += await job(name, batches[name], ctx.deps)
            now = time.perf_counter()
            if result.finalized >= target[0] and requests_done.is_set():
                await confirm()
            if done.is_set():
                break
            if now - started > args.timeout:
                result.timed_out = True
                done.set()
                break
            if worked:
                progress[0] = now
                continue
            if now - checked > 0.25:  # the tallies could miss a finalize (another path); ask the table
                checked = now
                await confirm()
                if done.is_set():
                    last[0] = now
                    break
            if ("webhooks" in names and now - progress[0] > args.stall_seconds
                    and now - rescued > args.stall_seconds):
                rescued = now  # stuck: what the cron table's slower jobs would do, with short thresholds
                await job("reconcile-pull", 100, ctx.stalled_deps)
                await job("repair", 200, ctx.stalled_deps)
                continue
            t = time.perf_counter()
            await asyncio.sleep(0.002)  # the webhooks for what was just sent are still on their way
            result.idle_s += time.perf_counter() - t

    shapes = [("outbox", "webhooks")] if args.schedule == "alternate" else [("outbox",), ("webhooks",)]
    if profiler is not None:
        profiler.enable()
    try:
        await asyncio.gather(*(loop(shape) for _ in range(args.runners) for shape in shapes))
    finally:
        if profiler is not None:
            profiler.disable()
        await sender  # a timed-out run still waits for its requests' answers
    requested = marks["requested"]
    result.request_s = requested - started
    result.settle_s = max(0.0, (time.perf_counter() if result.timed_out else last[0]) - requested)
    result.cpu_request = Meter.used(before, marks["middle"])
    result.cpu_settle = Meter.used(marks["middle"], ctx.meter.snapshot())
    return result


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
            parts = await stack.enter_async_context(separate_processes(url, http, workdir, args.log_level))
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
                      Meter(parts.pids, c.database_name(url)), run_pool)
        figures.version = await c.server_version(run_pool)
        figures.where = [f"database:    {c.describe_server(server)}; scratch database {c.database_name(url)}",
                         *parts.where,
                         f"requests:    this process pid {os.getpid()}: POST /api/payouts over HTTP to the API "
                         f"({parts.api_url}), keep-alive aiohttp client, concurrency {args.concurrency}, "
                         f"Idempotency-Key + service token",
                         f"shape:       {_phases(args)}",
                         f"runners:     this process: {args.runners} x {_shape(args)} of execute_job(outbox "
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


# ============================================================================================
# Report
# ============================================================================================

def _phases(args: argparse.Namespace) -> str:
    return ("overlap: requests and jobs at the same time (--phases sequential: one after the other)"
            if args.phases == "overlap" else "sequential: all requests, then the jobs (--phases overlap: together)")


def _shape(args: argparse.Namespace) -> str:
    return "loop { outbox ; webhooks }" if args.schedule == "alternate" else "(loop { outbox } || loop { webhooks })"


def _loops(args: argparse.Namespace) -> int:
    return int(args.runners) * (1 if args.schedule == "alternate" else 2)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def per_s(items: float, seconds: float) -> str:
    return c.rate(items / seconds) if seconds > 0 else "-"


def _outcomes(t: Tally) -> str:
    parts = [f"{k}x{v:,}" for k, v in sorted(t.outcomes.items())]
    if t.skipped:
        parts.append(f"skippedx{t.skipped:,}")
    if t.errors:
        parts.append(f"ERRORSx{len(t.errors)}")
    return " ".join(parts) or "-"


def report_pass(p: Pass, args: argparse.Namespace, title: str, jobs_title: str | None = None) -> None:
    assert p.request is not None
    r = p.request
    answers = " ".join(f"{k}x{v:,}" for k, v in sorted((p.statuses + p.errors).items(), key=str))
    first = "requests (jobs running meanwhile)" if p.overlap else "phase 1, requests"
    rows = [
        [f"{first}: POST /api/payouts over HTTP, concurrency {args.concurrency}", f"{p.n:,}",
         f"{p.request_s:.2f}", per_s(p.n, p.request_s), f"p50 {c.ms(r.p50_ms)} / p99 {c.ms(r.p99_ms)} ms; {answers}"],
        [f"jobs: {args.runners} x {_shape(args)}, first request -> last FINALIZED" if p.overlap else
         f"phase 2, settle: {args.runners} x {_shape(args)} until all FINALIZED", f"{p.finalized:,}",
         f"{p.jobs_s:.2f}", per_s(p.settled, p.jobs_s), "TIMED OUT" if p.timed_out else ""],
    ]
    if p.overlap:
        rows.append(["  of which the tail: last request answered -> last FINALIZED", "", f"{p.settle_s:.2f}", "", ""])
    rows.append([f"END TO END ({args.phases}): first request -> last FINALIZED", f"{p.settled:,}",
                 f"{p.e2e_s:.2f}", c.rate(p.e2e_rate), ""])
    c.print_table(["phase", "payouts", "seconds", "payouts/s", ""], rows, title=title)
    job_rows = []
    for name, t in p.jobs.items():
        if not t.runs:
            continue
        job_rows.append([name, f"{t.runs:,}", f"{t.items:,}", f"{t.busy:.2f}", per_s(t.items, t.busy),
                         per_s(t.items, p.jobs_s), c.percent(t.busy / args.runners / p.jobs_s)
                         if p.jobs_s > 0 else "-", _outcomes(t)])
    job_rows.append(["idle: nothing due, webhooks on their way", "", "", f"{p.idle_s:.2f}", "", "",
                     c.percent(p.idle_s / _loops(args) / p.jobs_s) if p.jobs_s > 0 else "-", ""])
    c.print_table(["job", "runs", "items", "busy s", "items/busy s", "items/s of jobs' window",
                   "share of window", "outcomes"], job_rows, title=jobs_title)
    out, hooks = p.jobs["outbox"], p.jobs["webhooks"]
    if out.items and hooks.items and out.busy and hooks.busy and args.schedule == "per-job":
        a, b = out.items / out.busy, hooks.items / hooks.busy
        print(f"   the jobs run concurrently: phase 2's ceiling is the slower job's rate, min({a:,.0f}, {b:,.0f}) "
              f"payouts/s, while CPU allows")
    elif out.items and hooks.items and out.busy and hooks.busy:
        a, b = out.items / out.busy, hooks.items / hooks.busy
        print(f"   one loop alternates the jobs: its ceiling is 1 / (1/{a:,.0f} + 1/{b:,.0f}) = "
              f"{1 / (1 / a + 1 / b):,.0f} payouts/s (outbox busy {out.busy / p.n * 1000:.2f} ms + webhooks busy "
              f"{hooks.busy / p.n * 1000:.2f} ms per payout)")
    for name, t in p.jobs.items():
        for error in t.errors[:3]:
            print(f"   {name} run failed: {error}")


def report_cpu(p: Pass) -> None:
    rows = []
    req, settle = p.cpu_request, p.cpu_settle
    wall_r, wall_s = req.get("wall", 0.0), settle.get("wall", 0.0)
    for part in [k for k in req if k not in ("wall", "machine")] + ["machine"]:
        a, b = req.get(part, float("nan")), settle.get(part, float("nan"))
        label = "whole machine (all processes, incl. others)" if part == "machine" else part
        rows.append([label, _cores(a, wall_r), _ms_per(a, p.n), _cores(b, wall_s), _ms_per(b, p.n),
                     _cores(a + b, wall_r + wall_s), _ms_per(a + b, p.n)])
    rows.append(["all our processes + PostgreSQL", _cores(_ours(req), wall_r), _ms_per(_ours(req), p.n),
                 _cores(_ours(settle), wall_s), _ms_per(_ours(settle), p.n),
                 _cores(_ours(req) + _ours(settle), wall_r + wall_s), _ms_per(_ours(req) + _ours(settle), p.n)])
    first, second = ("requests+jobs", "tail") if p.overlap else ("phase 1", "phase 2")
    c.print_table(["process", f"{first} cores", "CPU ms/payout", f"{second} cores", "CPU ms/payout",
                   "whole run cores", "CPU ms/payout"], rows,
                  title=f"3. CPU used ({os.cpu_count()} CPUs; PostgreSQL = this database's backends + auxiliaries; "
                        f"API = POST /api/payouts + webhook intake)")


def _cores(cpu: float, wall: float) -> str:
    return "n/a" if cpu != cpu or wall <= 0 else f"{cpu / wall:.2f}"


def _ms_per(cpu: float, n: int) -> str:
    return "n/a" if cpu != cpu or not n else f"{cpu / n * 1000:.2f}"


def report_checks(rows: list[tuple[str, str, bool]], title: str) -> None:
    c.print_table(["check", "found", "result"], [[a, b, "OK" if ok else "FAIL"] for a, b, ok in rows], title=title)


def report_profile(f: Figures, args: argparse.Namespace) -> None:
    p = f.profiled
    assert p is not None
    n = p.n
    print(f"\n5. where the time goes: instrumented pass of {n:,} payouts (timers on every statement and pool "
          f"acquire add a little overhead)")
    report_pass(p, args, "   the instrumented pass")
    by_job: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for (job, _key), (count, secs) in f.sql.items():
        by_job[job][0] += count
        by_job[job][1] += secs
    order = ["request", "outbox", *OUTBOX_STEPS, INTAKE, "webhooks", "reconcile-pull", "repair", "other"]
    rows = []
    for job in sorted(by_job, key=lambda j: order.index(j) if j in order else len(order)):
        count, secs = by_job[job]
        waits = f.acquires.get(job, [0, 0.0])
        step = f.steps.get(job)
        busy = p.jobs[job].busy if job in p.jobs else (step[1] if step else p.request_s * args.concurrency
                                                       if job == "request" else float("nan"))
        rows.append([job, f"{count / n:.1f}", c.ms(secs / n * 1000), f"{waits[0] / n:.1f}",
                     c.ms(waits[1] / n * 1000), "n/a" if busy != busy else c.ms(busy / n * 1000)])
    c.print_table(["job (SQL filed by the job that ran it)", "statements/payout", "SQL ms/payout",
                   "pool acquires/payout", "pool wait ms/payout", "wall ms/payout"], rows,
                  title="   SQL round trips per payout (lock waits count as SQL time)")
    print("   wall ms/payout: the job's busy time (request: summed over the concurrent workers; outbox steps: summed "
          "over their concurrent sends)")
    for job in ("request", "outbox", *OUTBOX_STEPS, INTAKE, "webhooks"):
        stmts = sorted(((k, v) for (j, k), v in f.sql.items() if j == job), key=lambda kv: -kv[1][1])
        if not stmts:
            continue
        total = sum(v[1] for _, v in stmts) or 1
        c.print_table([f"{job}: statement (normalised)", "per payout", "mean ms", "share"],
                      [[k[:80], f"{v[0] / n:.2f}", c.ms(v[1] / v[0] * 1000), c.percent(v[1] / total)]
                       for k, v in stmts[:20]], title="")
    if f.provider_ms:
        pm = f.provider_ms
        q = lambda x: pm[min(len(pm) - 1, int(x * len(pm)))]  # noqa: E731
        print(f"\n   provider create_payout (HTTP to the simulator, from the outbox): {len(pm):,} calls, p50 "
              f"{q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, mean {sum(pm) / len(pm):.2f} ms")
    for name, (count, secs) in f.steps.items():
        print(f"   {name}: {count:,} calls, mean {secs / count * 1000:.2f} ms each")
    if f.cprofiled is not None:
        report_cprofile(f.profile_path, f.cprofiled, args)


_PACKAGES = [("periodya", "/periodya/"), ("asyncpg", "/asyncpg/"), ("aiohttp", "/aiohttp/"),
             ("pydantic", "/pydantic"), ("structlog", "/structlog/"), ("yarl/multidict", "/yarl/"),
             ("yarl/multidict", "/multidict/"), ("asyncio", "/asyncio/"), ("bench", "/bench/")]


def _package(filename: str) -> str:
    for name, marker in _PACKAGES:
        if marker in filename:
            return name
    return "builtins (C)" if filename.startswith("~") else "other"


def report_cprofile(path: str, p: Pass, args: argparse.Namespace) -> None:
    ps = pstats.Stats(path, stream=io.StringIO())
    by_package: Counter[str] = Counter()
    idle = 0.0
    entries, ours = [], []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in ps.stats.items():  # type: ignore[attr-defined]
        if "epoll" in func and "poll" in func:
            idle += tottime  # the event loop waiting for I/O: not work
            continue
        by_package[_package(filename)] += tottime
        entries.append((tottime, ncalls, cumtime, f"{Path(filename).name}:{line} {func}"))
        if "/periodya/" in filename:
            ours.append((cumtime, ncalls, f"{Path(filename).parent.name}/{Path(filename).name}:{line} {func}"))
    total, n = sum(by_package.values()) or 1e-9, p.n
    where = "runners only" if args.layout == "procs" else "runners + simulator + webhook API, one event loop"
    print(f"\n   cProfile of phase 2 in this process ({where}), a separate pass of {n:,} payouts "
          f"({p.n / p.settle_s if p.settle_s else 0:,.0f}/s under the profiler): {total:.2f} s busy "
          f"of CPU ({total / n * 1e6:,.0f} us per payout, profiler overhead included)")
    c.print_table(["package (own time, epoll wait left out)", "share", "us per payout"],
                  [[k, c.percent(v / total), f"{v / n * 1e6:,.0f}"] for k, v in by_package.most_common()])
    entries.sort(reverse=True)
    c.print_table(["function (top 15 by own time)", "calls/payout", "own us/payout", "cum us/payout"],
                  [[name[:90], f"{calls / n:.1f}", f"{tot / n * 1e6:,.0f}", f"{cum / n * 1e6:,.0f}"]
                   for tot, calls, cum, name in entries[:15]])
    ours.sort(reverse=True)
    c.print_table(["periodya function (top 15 by cumulative CPU; a coroutine's only while it runs)", "calls/payout",
                   "cum us/payout"], [[name[:90], f"{calls / n:.1f}", f"{cum / n * 1e6:,.0f}"]
                                      for cum, calls, name in ours[:15]])


def report(f: Figures, args: argparse.Namespace) -> None:
    p = f.main
    assert p is not None
    print(f"\nPostgreSQL {f.version}; {p.n:,} payouts of {AMOUNT} USD over {args.payees} payees; simulator latency 0, "
          f"autoSettle, settleDelayMs 0, paidRatio 1; {_phases(args)}; batches outbox {args.batch_outbox} / webhooks "
          f"{args.batch_webhooks}; {args.runners} x {_shape(args)}; {c.machine_load()} after the run")
    report_pass(p, args, "1. payouts/s, end to end and per phase (same run, same database)",
                "2. payouts/s per job (busy s = time inside execute_job, summed over the loops; items/busy s = the "
                "job's own rate)")
    report_cpu(p)
    report_checks(f.checks, "4. checks")
    c.print_table(["target", "figure", "result"], [
        [f">= {TARGET_E2E} payouts/s end to end (request -> FINALIZED)", c.rate(p.e2e_rate),
         verdict(p.e2e_rate >= TARGET_E2E and not p.timed_out)]], title="   target")
    if f.profiled is not None:
        report_profile(f, args)
        report_checks(f.profile_checks, "   checks after the instrumented pass (counts cumulative over both passes)")
    if any(f.log_lines.values()):
        print(f"\n   warning/error lines in the child logs: {f.log_lines}")
    findings(f, args)


def _ours(cpu: dict[str, float]) -> float:
    return sum(v for k, v in cpu.items() if k not in ("wall", "machine") and v == v)


def findings(f: Figures, args: argparse.Namespace) -> None:
    p = f.main
    assert p is not None and p.request is not None
    lines: list[str] = []
    cores = os.cpu_count() or 1
    req_rate = p.n / p.request_s if p.request_s else 0.0
    settle_rate = p.n / p.settle_s if p.settle_s else 0.0
    if p.overlap:
        lines.append(f"requests and jobs overlap: requests ran at {req_rate:,.0f}/s with the jobs beside them, and "
                     f"the jobs' tail after the last answer took {p.settle_s:.2f} s ({p.settle_s / p.e2e_s:.0%} of "
                     f"the run); end to end {p.e2e_rate:,.0f}/s. Compare --phases sequential in the same conditions")
    else:
        lines.append(f"the phases run one after the other, so end to end = 1 / (1/{req_rate:,.0f} + "
                     f"1/{settle_rate:,.0f}) = {p.e2e_rate:,.0f}/s; phase 2 (the jobs) is "
                     f"{p.settle_s / p.e2e_s:.0%} of the time")
    if p.overlap:
        pass
    elif req_rate > TARGET_E2E and settle_rate:
        need = 1 / (1 / TARGET_E2E - 1 / req_rate)
        lines.append(f"with requests at {req_rate:,.0f}/s, {TARGET_E2E}/s end to end needs phase 2 at >= {need:,.0f}/s "
                     f"({need / settle_rate:.0f}x today's {settle_rate:,.0f}/s)")
    elif req_rate:
        lines.append(f"phase 1 alone ({req_rate:,.0f} requests/s) is below {TARGET_E2E}/s: the target cannot be met "
                     f"whatever phase 2 does")
    if p.timed_out:
        lines.append(f"phase 2 TIMED OUT after {args.timeout:g} s with {p.finalized:,} of {p.n:,} FINALIZED: the "
                     f"figures per payout below are not meaningful; see the checks and the job outcomes")
    cpu1, cpu2 = p.cpu_request, p.cpu_settle
    all_in = (_ours(cpu1) + _ours(cpu2)) / p.n * 1000 if p.n and not p.timed_out else 0.0
    if all_in > 0:
        first, second = ("requests+jobs", "tail") if p.overlap else ("phase 1", "phase 2")
        lines.append(f"CPU budget: a payout costs {all_in:.2f} ms of CPU from request to FINALIZED ({first} "
                     f"{_ours(cpu1) / p.n * 1000:.2f} + {second} {_ours(cpu2) / p.n * 1000:.2f}, all our processes and "
                     f"PostgreSQL), so {cores} cores cap this pipeline near {cores / all_in * 1000:,.0f} payouts/s "
                     f"even with perfect overlap and nothing else running; {TARGET_E2E}/s needs <= "
                     f"{cores / TARGET_E2E * 1000:.1f} ms per payout "
                     + (f"({all_in / (cores / TARGET_E2E * 1000):.2f} of that budget is used)"
                        if all_in <= cores / TARGET_E2E * 1000 else
                        f"({all_in / (cores / TARGET_E2E * 1000):.2f}x over it): no amount of concurrency closes "
                        f"that, only less work per payout does"))
    wall2 = cpu2.get("wall", 0.0)
    if wall2 > 0 and not p.overlap:
        ours, machine = _ours(cpu2) / wall2, cpu2["machine"] / wall2
        lines.append(f"phase 2: our processes used {ours:.2f} of {cores} cores; one loop runs the jobs one after the "
                     f"other and each waits on its round trips and provider calls, so phase 2 runs at 1 / (the sum "
                     f"of those latencies per batch)")
        if machine - ours >= 0.25:
            lines.append(f"other processes on the machine used {machine - ours:.2f} cores during phase 2 (the whole "
                         f"machine {machine:.2f}): every round trip waited for a CPU too, so the rates here are lower "
                         f"than on a quiet machine; the CPU-per-payout figures are not affected much")
    out, hooks = p.jobs["outbox"], p.jobs["webhooks"]
    if args.runners > 1:
        lines.append(f"{args.runners} loops: webhooks skipped {hooks.skipped:,} items (every loop lists the same "
                     f"pending events and loses the try-lock race on the other's), outbox {out.skipped:,}; "
                     f"{hooks.busy / hooks.items * 1000 if hooks.items else 0:.2f} ms busy per applied event "
                     f"(compare a --runners 1 run: the difference is waiting, on cash:platform among others)")
    if hooks.items and out.items:
        lines.append(f"busy per payout: outbox {out.busy / p.n * 1000:.2f} ms + webhooks {hooks.busy / p.n * 1000:.2f} "
                     f"ms (+ idle {p.idle_s / p.n * 1000:.2f} ms) against the jobs' window of "
                     f"{p.jobs_s / p.n * 1000:.2f} ms per payout with {args.runners} loop(s)")
    if f.profiled is not None:
        lines += profile_findings(f, args)
    lines += SUGGESTIONS
    print("\n6. findings")
    for line in filter(None, lines):
        print(f"   - {line}")


# statements of the webhooks transaction that run while it holds the payee's and cash:platform's account locks
_AFTER_ACCOUNT_LOCK = ("SELECT seq, tx, stream_id, stream_version, recorded_at FROM append_events", "INSERT INTO",
                       "SELECT t.* FROM unnest", "UPDATE provider_events", "COMMIT")


def profile_findings(f: Figures, args: argparse.Namespace) -> list[str]:
    p = f.profiled
    assert p is not None
    n, out = p.n, []
    per_job: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for (job, key), (count, secs) in f.sql.items():
        group = "outbox" if job.startswith("outbox") else job
        per_job[group][0] += count
        per_job[group][1] += secs
        per_job[group][2] += count if key.startswith("COMMIT") else 0
    total = sum(v[0] for v in per_job.values())
    commits = sum(v[2] for v in per_job.values())
    parts = ", ".join(f"{job} {v[0] / n:.1f}" for job, v in per_job.items() if v[0] / n >= 0.5)
    out.append(f"SQL round trips per payout: {total / n:.1f} in this process ({parts}), {commits / n:.1f} "
               f"transactions; PostgreSQL's and Python's CPU per payout scale with these round trips"
               + ("" if INTAKE in per_job else "; the API process's SQL (payout requests and webhook intake, both "
                  "group-committed) is not counted here (--layout inproc counts it, under \"other\")"))
    claim, send, record = (f.steps.get(step) for step in OUTBOX_STEPS)
    if claim and send and record and f.provider_ms:
        mean_provider = sum(f.provider_ms) / len(f.provider_ms)
        out.append(f"outbox, per run of up to {args.batch_outbox}: the claim transaction "
                   f"{claim[1] / claim[0] * 1000:.1f} ms, then the provider calls ({outbox.SEND_CONCURRENCY} at a "
                   f"time, each {mean_provider:.1f} ms) "
                   f"{send[1] / send[0] * 1000:.1f} ms, then the record transaction {record[1] / record[0] * 1000:.1f} "
                   f"ms; per payout {(claim[1] + send[1] + record[1]) / n * 1000:.2f} ms")
    hook = [(k, v) for (j, k), v in f.sql.items() if j == "webhooks"]
    runs = max(1, p.jobs["webhooks"].runs)
    held = sum(v[1] / v[0] * 1000 for k, v in hook if k.startswith(_AFTER_ACCOUNT_LOCK) and v[0] >= 0.9 * runs)
    locks = [v for k, v in hook if k.startswith("SELECT lock_keys")]
    if held and locks:
        count, secs = sum(v[0] for v in locks), sum(v[1] for v in locks)
        out.append(f"cash:platform: every finalize posts to it; a webhooks run locks it once for its whole batch, "
                   f"from its account lock_keys to its COMMIT, ~{held:.2f} ms here (append, projections, commit); "
                   f"with {args.runners} loop(s) lock_keys took {secs / count * 1000:.2f} ms on average")
    return out


SUGGESTIONS = [
    "done: each job run is batched (outbox: one claim transaction, concurrent provider calls, one record "
    "transaction; webhooks: one transaction per run, cash:platform locked once per batch); POST /api/payouts and "
    "the webhook intake are group-committed (handlers/commit_scheduler.py)",
    "done: the hot lookups are primary-key probes whatever the statistics (projections/rows.fetch_by_keys): a "
    "generic plan made while this fresh database's tables were small had scanned them whole for every batch",
    "left: about two thirds of the CPU is Python: three HTTP exchanges per payout (request, provider create, "
    "webhook), each parsed and answered by aiohttp on both sides, which no batching removes; the projections "
    "re-read the payout and outbox rows the unit of work has just folded",
]


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
