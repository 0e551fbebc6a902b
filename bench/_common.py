"""Shared by every benchmark: which server, scratch databases, drivers, child processes, CPU, the printer.

The one module of bench machinery (the benches import it as `c`): the server URL and scratch databases;
the concurrency drivers and their `Result`; the payout request over HTTP; child processes (`Child`,
`Children`, and the drill's cron loop, `python -m bench._common cron-loop`); CPU accounting from /proc;
the append line and the eventsourcing peer; options, targets (`verdict`) and the table printer;
cProfile summaries; timing connection and pool wrappers for the instrumented passes.

Drivers run N workers against one operation, either for a fixed duration or a fixed total count, and
return a `Result` (ops/s, p50/p99 latency). `drive_async` runs coroutines on the running event loop
(asyncpg, EventStore); `drive_threads` runs a blocking callable on N threads (synchronous libraries
such as eventsourcing). Both take an optional warm-up, run first and not recorded, so pools are open
and statements prepared before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import itertools
import math
import os
import pstats
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlparse, urlunparse

import aiohttp
import asyncpg
import orjson

from periodya import db
from periodya.config import validate_database_url
from periodya.errors import ConfigError
from periodya.eventstore import NO_STREAM, EventStore, NewEvent, StreamAppend

AsyncOp = Callable[[int], Awaitable[object]]
"""One operation of worker `n`: `await op(n)`. Make ids unique per call (e.g. a counter in a closure)."""
SyncOp = Callable[[int], object]
REPO = Path(__file__).resolve().parent.parent
"""This checkout: the child processes' working directory and first PYTHONPATH entry."""


# --- which server ---------------------------------------------------------------------------------

def bench_data_dir() -> Path:
    """PERIODYA_DATA_DIR when set, else a bench-only dir in the temp dir (never the user's data)."""
    raw = os.environ.get("PERIODYA_DATA_DIR")
    return Path(raw) if raw else Path(tempfile.gettempdir()) / "periodya-bench-pg"


def server_url() -> str:
    """DATABASE_URL when set, else the embedded server (started now, stopped when this process exits)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return validate_database_url(url)
    return db.start_embedded(bench_data_dir())


def describe_server(url: str) -> str:
    if os.environ.get("DATABASE_URL"):
        return f"DATABASE_URL {redact(url)}"
    return f"embedded PostgreSQL in {bench_data_dir()}"


def redact(url: str) -> str:
    parts = urlparse(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunparse(parts)


def database_name(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + name))


# --- scratch databases ----------------------------------------------------------------------------

async def admin_execute(url: str, sql: str) -> None:
    """`sql` (CREATE/DROP DATABASE) on a connection of its own to `url`; a failure is one ConfigError line."""
    pool = await db.connect_pool(url, min_size=1, max_size=1)  # maps every connect failure to one line
    try:
        await pool.execute(sql)
    except asyncpg.PostgresError as exc:
        raise ConfigError(f"{sql.split('(')[0].strip()} failed: {exc}") from None
    finally:
        await pool.close()


@asynccontextmanager
async def scratch_database(server: str, label: str, *, migrate: bool = True, keep: bool = False
                           ) -> AsyncIterator[str]:
    """A fresh database `bench_<label>_<random>` on `server`, migrated, dropped on the way out (unless `keep`)."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    await admin_execute(server, f'CREATE DATABASE "{name}"')
    url = with_database(server, name)
    try:
        if migrate:
            conn = await asyncpg.connect(url)
            try:
                await db.migrate(conn)
            finally:
                await conn.close()
        yield url
    finally:
        if not keep:
            await admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def settle(pool: asyncpg.Pool) -> None:
    """CHECKPOINT before a measurement so none pays for the previous one's dirty pages (when allowed)."""
    try:
        await pool.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass


async def server_version(pool: asyncpg.Pool) -> str:
    return str(await pool.fetchval("SELECT current_setting('server_version')")).split(" ")[0]


# --- results and drivers --------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    ops: int
    elapsed: float
    latencies: Sequence[float]  # seconds, sorted
    client_cpu: float = 0.0  # seconds of this process's CPU (all threads) during the window

    @property
    def per_second(self) -> float:
        return self.ops / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        rank = min(len(self.latencies) - 1, max(0, math.ceil(q * len(self.latencies)) - 1))
        return self.latencies[rank] * 1000

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(0.50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(0.99)

    @property
    def client_us_per_op(self) -> float:
        """CPU this process spent per operation: on a small machine the client competes with the server."""
        return self.client_cpu / self.ops * 1e6 if self.ops else math.nan


def combine(results: Sequence[Result]) -> Result:
    """One figure from several slices of it: operations, time, latencies and CPU pooled."""
    latencies = sorted(x for r in results for x in r.latencies)
    return Result(sum(r.ops for r in results), sum(r.elapsed for r in results), latencies,
                  sum(r.client_cpu for r in results))


class _Plan:
    """Hands out the right to start one more operation: until a deadline, or until `count` are taken."""

    def __init__(self, seconds: float | None, count: int | None) -> None:
        if (seconds is None) == (count is None):
            raise ValueError("give exactly one of seconds or count")
        self.deadline = time.perf_counter() + seconds if seconds is not None else math.inf
        self._tickets = itertools.count() if count is not None else None
        self.count = count

    def another(self) -> bool:
        if self._tickets is not None:
            return next(self._tickets) < (self.count or 0)  # next() on a count is atomic under the GIL
        return time.perf_counter() < self.deadline


def _result(per_worker: list[list[float]], started: float, cpu_started: float) -> Result:
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    latencies = sorted(x for worker in per_worker for x in worker)
    return Result(len(latencies), elapsed, latencies, cpu)


async def _async_window(op: AsyncOp, concurrency: int, plan: _Plan) -> Result:
    per_worker: list[list[float]] = [[] for _ in range(concurrency)]

    async def worker(n: int) -> None:
        record = per_worker[n].append
        while plan.another():
            t = time.perf_counter()
            await op(n)
            record(time.perf_counter() - t)

    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        async with asyncio.TaskGroup() as group:  # one failing op cancels the other workers
            for n in range(concurrency):
                group.create_task(worker(n))
    except ExceptionGroup as group_error:
        raise group_error.exceptions[0] from None  # report the operation's own error, not the group
    return _result(per_worker, started, cpu_started)


async def drive_async(op: AsyncOp, concurrency: int, *, seconds: float | None = None, count: int | None = None,
                      warmup: float = 0.0) -> Result:
    """Run `concurrency` coroutine workers calling `op` for `seconds` (or `count` ops in total)."""
    if warmup > 0:
        await _async_window(op, concurrency, _Plan(warmup, None))
    return await _async_window(op, concurrency, _Plan(seconds, count))


def _thread_window(op: SyncOp, concurrency: int, plan: _Plan) -> Result:
    per_worker: list[list[float]] = [[] for _ in range(concurrency)]
    failed = threading.Event()

    def worker(n: int) -> None:
        record = per_worker[n].append
        try:
            while not failed.is_set() and plan.another():
                t = time.perf_counter()
                op(n)
                record(time.perf_counter() - t)
        except BaseException:
            failed.set()  # stop the other workers, then re-raise through the future
            raise

    started, cpu_started = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:
        futures = [pool.submit(worker, n) for n in range(concurrency)]
        for future in futures:
            future.result()
    return _result(per_worker, started, cpu_started)


def drive_threads(op: SyncOp, concurrency: int, *, seconds: float | None = None, count: int | None = None,
                  warmup: float = 0.0) -> Result:
    """Like `drive_async` for a blocking `op`, on `concurrency` threads."""
    if warmup > 0:
        _thread_window(op, concurrency, _Plan(warmup, None))
    return _thread_window(op, concurrency, _Plan(seconds, count))


# --- HTTP payout requests (the API's own front door) ---------------------------------------------

def client_session(url: str, concurrency: int) -> aiohttp.ClientSession:
    """A keep-alive client for `concurrency` workers against the API at `url`."""
    connector = aiohttp.TCPConnector(limit=concurrency + 4, keepalive_timeout=60, force_close=False)
    return aiohttp.ClientSession(base_url=url, connector=connector, timeout=aiohttp.ClientTimeout(total=60))


def payout_op(session: aiohttp.ClientSession, token: str, payees: list[str], amount: int,
              statuses: Counter[int], errors: Counter[str], label: str,
              created: Callable[[dict[str, Any]], object] | None = None) -> AsyncOp:
    """POST /api/payouts with the service token and a unique Idempotency-Key (`label`-n) per call, payees
    round-robin. Statuses and transport errors are counted, never fatal to the run; `created` gets each
    201 answer's body."""
    serial = itertools.count()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def op(worker: int) -> None:
        n = next(serial)
        body = orjson.dumps({"payeeId": payees[n % len(payees)], "amount": amount, "currency": "USD",
                             "destination": f"ba_{n % 997}"})
        try:
            async with session.post("/api/payouts", data=body,
                                    headers={**headers, "Idempotency-Key": f"{label}-{n}"}) as resp:
                answer = await resp.read()
                statuses[resp.status] += 1
                if created is not None and resp.status == 201:
                    created(orjson.loads(answer))
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[type(exc).__name__] += 1

    return op


# --- child processes ------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a child server's --port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any PERIODYA_* or DATABASE_URL of its own, plus `extra`; this
    checkout first on PYTHONPATH, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERIODYA_") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    return env


@dataclass
class Child:
    """One restartable child process (a `periodya serve`, a cron loop, the simulator) whose command line and
    environment are kept, so it can be killed (SIGKILL: exactly a crash, no cleanup) and started again on
    the same port. Output goes to a log file per start (never a pipe that could fill up): `name.log`,
    then `name.2.log`... `ready` is a URL that answers 200 once the child serves."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_dir: Path
    ready: str | None = None
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, *, seconds: float = 60.0) -> None:
        """Start it and, with `ready`, wait until it serves; ConfigError (with its log's tail) when it exits
        first or is not ready in `seconds`."""
        self.starts += 1
        log = self.log_dir / (f"{self.name}.log" if self.starts == 1 else f"{self.name}.{self.starts}.log")
        self.logs.append(log)
        with log.open("wb") as out:  # the child keeps its own descriptor
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=dict(self.env), stdout=out, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True)  # Ctrl-C reaches the bench only
        if self.ready is not None:
            await self._await_ready(seconds)

    async def _await_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if not self.running:
                    raise ConfigError(f"{self.name} exited with {self.returncode()}: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.ready or "") as r:
                        if r.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise ConfigError(f"{self.name} not ready at {self.ready} after {seconds:.0f} s: {self.tail()}")
                await asyncio.sleep(0.05)

    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    def tail(self, lines: int = 15) -> str:
        if not self.logs:
            return ""
        try:
            return "\n".join(self.logs[-1].read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    async def kill(self) -> None:
        """SIGKILL and reap: a crash at whatever the child was doing."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self, seconds: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in `seconds`."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), seconds)
        except TimeoutError:
            await self.kill()


class Children:
    """Every child a bench started, stopped in reverse order by `stop_all` (idempotent), whatever happened:
    an exception, Ctrl-C, or SIGTERM to the bench (which cancels its main task, as Ctrl-C does)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.all: list[Child] = []

    def periodya(self, name: str, args: Sequence[str], env: Mapping[str, str], *, ready: str | None = None) -> Child:
        return self.python(name, ["-m", "periodya", *args], env, ready=ready)

    def python(self, name: str, args: Sequence[str], env: Mapping[str, str], *, ready: str | None = None) -> Child:
        child = Child(name, [sys.executable, *args], env, self.log_dir, ready)
        self.all.append(child)
        return child

    async def stop_all(self, seconds: float = 10.0) -> None:
        for child in reversed(self.all):
            await child.stop(seconds)


async def create_admin(env: dict[str, str], email: str, password: str) -> None:
    """`periodya admin create-user EMAIL --password-stdin`, as the runbook's operator does."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "periodya", "admin", "create-user", email, "--password-stdin", env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate((password + "\n").encode())
    if proc.returncode != 0:
        raise RuntimeError(f"periodya admin create-user exited {proc.returncode}: {out.decode(errors='replace')}")


async def login(api: str, email: str, password: str) -> str:
    """POST /api/auth/login: an admin session token."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{api}/api/auth/login", json={"email": email, "password": password}) as r:
        body = await r.json(content_type=None)
        if r.status != 200:
            raise RuntimeError(f"login answered {r.status}: {body}")
        return str(body["token"])


@asynccontextmanager
async def children(log_dir: Path) -> AsyncIterator[Children]:
    """A `Children` whose every child is stopped on the way out."""
    started = Children(log_dir)
    try:
        yield started
    finally:
        await started.stop_all()


# The cron loop of the drill: `python -m bench._common cron-loop --api URL [--api URL]... [--scale S]`.
# It calls the run endpoints exactly as an external scheduler does (POST /api/admin/ops/run/JOB with
# `Authorization: Bearer $PERIODYA_CRON_SECRET`), on the runbook's table compressed into seconds: the
# built-in `periodya scheduler` fires on whole minutes (croniter, five fields) and cannot be sped up, so a
# drill that wants its stuck work healed in seconds drives the endpoints itself. Each job runs in its own
# loop, one call at a time (like the scheduler, it never stacks runs of one job), and each call goes to
# the next API in turn. Two of these processes overlap on purpose. Failures (a refused connection while a
# server is down, a 5xx) are counted and printed, never fatal: the next tick retries.

CRON_TABLE = (("outbox", "", 0.5), ("webhooks", "", 0.5), ("reconcile-pull", "", 2.0), ("repair", "", 2.0),
              ("sentinel", "?mode=recent", 6.0))
"""job, query, seconds between the end of one call and the start of the next (before --scale)."""
CRON_LOOP = ["-m", "bench._common", "cron-loop"]
"""The cron loop's python arguments (`Children.python(name, [*CRON_LOOP, "--api", URL], env)`)."""


async def _cron_job(http: aiohttp.ClientSession, apis: list[str], job: str, query: str, every: float,
                    offset: int, counts: Counter[str]) -> None:
    n = offset
    while True:
        api = apis[n % len(apis)]
        n += 1
        try:
            async with http.post(f"{api}/api/admin/ops/run/{job}{query}") as r:
                await r.read()
                counts[f"{job} {r.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            counts[f"{job} {type(exc).__name__}"] += 1
        await asyncio.sleep(every)


async def cron_loop(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._common cron-loop",
                                     description="the drill's cron loop (see bench/_common.py)")
    parser.add_argument("--api", action="append", required=True, help="base URL of a `periodya serve` (repeatable)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every interval by this")
    parser.add_argument("--offset", type=int, default=0, help="start the round-robin at this API")
    args = parser.parse_args(argv)
    secret = os.environ.get("PERIODYA_CRON_SECRET")
    if not secret:
        print("cronloop: PERIODYA_CRON_SECRET is not set", file=sys.stderr)
        return 2
    counts: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {secret}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=120)) as http:
        tasks = [asyncio.create_task(_cron_job(http, args.api, job, query, every * args.scale, args.offset, counts))
                 for job, query, every in CRON_TABLE]
        try:
            while True:
                await asyncio.sleep(10)
                print(time.strftime("%H:%M:%S"), dict(sorted(counts.items())), flush=True)
        finally:
            for task in tasks:
                task.cancel()
    return 0


# --- CPU accounting from /proc (Linux; zeros elsewhere) ---------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far; 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def postgres_pids(database: str) -> list[int]:
    """The embedded server's postmaster, its auxiliary processes (WAL writer, checkpointer...) and the
    backends connected to `database`; other databases' backends (other runs sharing the server) are left
    out. Empty when DATABASE_URL points elsewhere."""
    if os.environ.get("DATABASE_URL"):
        return []
    try:
        master = int((bench_data_dir() / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != master:
                continue
            title = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except (OSError, ValueError, IndexError):
            continue
        # a backend's title: "postgres: USER DATABASE [local]|HOST(PORT) STATE"; anything else is auxiliary
        backend = len(title) >= 4 and (title[3].startswith("[local]") or "(" in title[3])
        if not backend or title[2] == database:
            pids.append(int(stat.parent.name))
    return pids


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all processes, all cores)."""
    try:
        parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / _TICK


class CpuMeter:
    """Snapshots of CPU seconds: this process (`me`), the child processes by role, PostgreSQL (NaN when the
    server is not the embedded one) and the whole machine, with the wall clock under "wall"."""

    def __init__(self, pids: dict[str, int], database: str, *, me: str = "this process",
                 postgres: str = "PostgreSQL") -> None:
        self.pids, self.database, self.me, self.postgres = pids, database, me, postgres

    def snapshot(self) -> dict[str, float]:
        pg = postgres_pids(self.database)
        return {self.me: time.process_time(), **{k: proc_cpu(p) for k, p in self.pids.items()},
                self.postgres: sum(proc_cpu(p) for p in pg) if pg else float("nan"), "machine": machine_busy(),
                "wall": time.perf_counter()}

    @staticmethod
    def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """CPU seconds per part over the window (and the window's wall seconds)."""
        return {k: after[k] - before[k] for k in before}

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """Cores used per part over the window (CPU seconds per wall second)."""
        wall = after["wall"] - before["wall"]
        return {k: (after[k] - before[k]) / wall for k in before if k != "wall"}


# --- floors and peers ------------------------------------------------------------------------------
# The event every append line writes (bench append's floor and event store, bench commands' peer line),
# and the peer: the `eventsourcing` library (PyPI) with its PostgreSQL persistence, driven from threads.
# The library is synchronous (psycopg 3 with a psycopg_pool pool), so concurrency is N threads sharing
# one Application whose pool is sized for them (POSTGRES_POOL_SIZE, no overflow, unlimited waiters);
# its tables go in their own schema of the scratch database (PEER_SCHEMA, which the bench creates).

POOL_HEADROOM = 4
"""Connections a pool has beyond its workers (the drivers' N plus a few for the bench's own queries)."""
PAYLOAD: dict[str, Any] = {"payoutId": "po_00000000000000000000000001", "payee": "acct_1Q2w3E4r5T6y7U8i",
                           "amount": 125000, "currency": "USD", "reference": "invoice 2024-0001"}
METADATA: dict[str, Any] = {"schemaVersion": 1}
EVENT_TYPE = "PayoutRequested"


def append_op(store: EventStore, label: str, events_per_append: int) -> AsyncOp:
    """EventStore.append of `events_per_append` events, each call to a new stream of its own."""
    serial = itertools.count()
    events = [NewEvent(EVENT_TYPE, PAYLOAD, METADATA)] * events_per_append

    async def op(worker: int) -> None:
        stream = f"{label}-w{worker}-{next(serial)}"  # each worker appends to its own new streams
        await store.append([StreamAppend(stream, NO_STREAM, events)])

    return op


PEER_SCHEMA = "eventsourcing_peer"
PEER_INSTALL_HINT = "pip install -e '.[bench]'"


def peer_missing() -> str | None:
    """Why the peer cannot run here, or None when it can."""
    for module in ("eventsourcing", "psycopg", "psycopg_pool"):
        if find_spec(module) is None:
            return f"{module} is not installed ({PEER_INSTALL_HINT})"
    return None


def peer_describe() -> str:
    """Library and driver versions, and which psycopg implementation is loaded (C or pure Python)."""
    import psycopg

    try:
        lib = version("eventsourcing")
    except PackageNotFoundError:
        lib = "?"
    return f"eventsourcing {lib}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__} implementation)"


def _peer_env(url: str, pool_size: int) -> dict[str, str]:
    """The library's configuration (its POSTGRES_* variables) for the database at `url`."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
        "POSTGRES_HOST": str(params.get("host") or "localhost"),
        "POSTGRES_PORT": str(params.get("port") or 5432),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": PEER_SCHEMA,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_MAX_WAITING": "0",  # 0 = unlimited: a thread waits for a connection, never fails
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "CREATE_TABLE": "yes",
    }


def peer_application(url: str, pool_size: int) -> Any:
    """An Application on the library's PostgreSQL recorder, its tables created, its pool full."""
    from eventsourcing.application import Application

    app = Application(env=_peer_env(url, pool_size))
    pool = app.recorder.datastore.pool
    pool.open(wait=True, timeout=30)
    pool.wait(timeout=30)  # all pool_size connections open before the clock starts
    return app


@functools.cache
def _peer_aggregate() -> Any:
    """The tiny aggregate class, defined once: the library registers each class under its topic."""
    from eventsourcing.domain import Aggregate

    class Payout(Aggregate):
        def __init__(self, payee: str, amount: int, currency: str, reference: str) -> None:
            self.payee = payee
            self.amount = amount
            self.currency = currency
            self.reference = reference

    return Payout


def peer_save_op(app: Any, payload: dict[str, Any]) -> SyncOp:
    """Create a new one-event aggregate and `app.save` it: one stored event, one transaction."""
    payout = _peer_aggregate()
    serial = itertools.count()

    def op(worker: int) -> None:
        app.save(payout(payload["payee"], payload["amount"], payload["currency"], f"w{worker}-{next(serial)}"))

    return op


# --- options and output ---------------------------------------------------------------------------

def concurrency_list(text: str) -> list[int]:
    """argparse type for "1,8,32"."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_common_options(parser: argparse.ArgumentParser, *, seconds: float = 3.0,
                       concurrency: str = "1,8,32") -> None:
    parser.add_argument("--seconds", type=float, default=seconds,
                        help=f"measured seconds per figure (default {seconds:g})")
    parser.add_argument("--concurrency", type=concurrency_list, default=concurrency_list(concurrency),
                        help=f"comma-separated worker counts (default {concurrency})")


def machine_load() -> str:
    """The 1-minute load average against the core count: other work on the box skews every figure."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    busy = " (busy: other work is competing for the CPUs, figures will be low and noisy)" if load > cores / 2 else ""
    return f"load average {load:.2f} on {cores} cores{busy}"


def rate(x: float) -> str:
    return f"{x:,.0f}"


def ms(x: float) -> str:
    return f"{x:.2f}"


def percent(x: float) -> str:
    return f"{x:.0%}"


def times(x: float) -> str:
    return f"{x:.1f}x"


def verdict(ok: bool) -> str:
    """A target's result: a miss is reported, never an error."""
    return "PASS" if ok else "MISS"


def statement_key(query: str) -> str:
    """A statement's text, white space folded and parameters as `$`, cut to 88 characters (a table key)."""
    text = " ".join(query.split())
    text = re.sub(r"\$\d+", "$", text)
    return text[:88]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None) -> None:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    if title:
        print(f"\n{title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


# --- cProfile summaries ----------------------------------------------------------------------------

PACKAGES = [("periodya", "/periodya/"), ("asyncpg", "/asyncpg/"), ("aiohttp", "/aiohttp/"),
            ("pydantic", "/pydantic"), ("structlog", "/structlog/"), ("yarl/multidict", "/yarl/"),
            ("yarl/multidict", "/multidict/"), ("asyncio", "/asyncio/")]


def package_of(filename: str, extra: Sequence[tuple[str, str]] = ()) -> str:
    for name, marker in [*PACKAGES, *extra]:
        if marker in filename:
            return name
    return "builtins (C)" if filename.startswith("~") else "other"


@dataclass
class Profile:
    """A pstats file summed up: own time per package, every function (own time, calls, cumulative time),
    periodya's functions by cumulative time, and the event loop's I/O wait when left out."""

    by_package: Counter[str]
    functions: list[tuple[float, int, float, str]]  # own s, calls, cumulative s, "file:line func"
    ours: list[tuple[float, int, str]]  # cumulative s, calls, "package/file:line func"
    idle: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.by_package.values()) or 1e-9


def read_profile(path: str, extra: Sequence[tuple[str, str]] = (), *, skip_idle: bool = False) -> Profile:
    """`path` (pstats) summed up; `extra` packages are told apart too; `skip_idle` leaves out epoll waits."""
    ps = pstats.Stats(path, stream=io.StringIO())
    profile = Profile(Counter(), [], [])
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in ps.stats.items():  # type: ignore[attr-defined]
        if skip_idle and "epoll" in func and "poll" in func:
            profile.idle += tottime  # the event loop waiting for I/O: not work
            continue
        profile.by_package[package_of(filename, extra)] += tottime
        profile.functions.append((tottime, ncalls, cumtime, f"{Path(filename).name}:{line} {func}"))
        if "/periodya/" in filename:
            profile.ours.append((cumtime, ncalls, f"{Path(filename).parent.name}/{Path(filename).name}:{line} {func}"))
    profile.functions.sort(reverse=True)
    profile.ours.sort(reverse=True)
    return profile


def print_profile(profile: Profile, per: int, package_header: str) -> None:
    """Two tables: own time by package, then the top 15 functions by own time, both per `per` payouts."""
    print_table([package_header, "share", "us per payout"],
                [[k, percent(v / profile.total), f"{v / per * 1e6:,.0f}"] for k, v in profile.by_package.most_common()])
    print_table(["function (top 15 by own time)", "calls/payout", "own us/payout", "cum us/payout"],
                [[name[:90], f"{calls / per:.1f}", f"{tot / per * 1e6:,.0f}", f"{cum / per * 1e6:,.0f}"]
                 for tot, calls, cum, name in profile.functions[:15]])


# --- instrumented connections and pools (bench code only) -----------------------------------------

class PoolView:
    """Stands in for an asyncpg pool (whose attributes are read-only) so a bench can wrap `acquire`;
    the pool's query shortcuts are routed through that `acquire` too. Subclasses override `acquire`."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        return self._pool.acquire(*args, **kwargs)

    async def _on_a_connection(self, method: str, args: Any, kwargs: Any) -> Any:
        async with self.acquire() as conn:
            return await getattr(conn, method)(*args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._on_a_connection("fetch", args, kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._on_a_connection("fetchrow", args, kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._on_a_connection("fetchval", args, kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._on_a_connection("execute", args, kwargs)


class Instrumented(Protocol):
    """Where TimedConnection and TimedPool report. Nothing is timed while `on` is false; the bench decides
    where (and whether) each figure is filed, e.g. by a contextvar naming the job or the request."""

    on: bool

    def statement(self, query: str, elapsed: float) -> None:
        """One statement round trip of `elapsed` seconds."""

    def acquired(self, waited: float) -> None:
        """A connection handed out by the pool after `waited` seconds."""

    def released(self, elapsed: float) -> None:
        """A connection given back to the pool (its reset included) in `elapsed` seconds."""


class TimedConnection(asyncpg.Connection):  # type: ignore[misc]
    """Times every statement round trip and reports it to `instruments` (asyncpg routes fetch*/execute-with-
    args through _execute; executemany and execute without args, e.g. BEGIN/COMMIT and the pool's reset,
    are timed here). A bench subclasses it with its own `instruments` and passes the subclass to the pool
    as `connection_class` (asyncpg creates the connections); inert, one flag test per statement, while
    `instruments.on` is false."""

    instruments: ClassVar[Instrumented]

    async def _execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        if not self.instruments.on:
            return await super()._execute(query, *args, **kwargs)
        started = time.perf_counter()
        try:
            return await super()._execute(query, *args, **kwargs)
        finally:
            self.instruments.statement(query, time.perf_counter() - started)

    async def executemany(self, command: str, args: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not self.instruments.on:
            return await super().executemany(command, args, timeout=timeout)  # type: ignore[no-any-return]
        started = time.perf_counter()
        try:
            return await super().executemany(command, args, timeout=timeout)  # type: ignore[no-any-return]
        finally:
            self.instruments.statement(command, time.perf_counter() - started)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109
        if args or not self.instruments.on:  # with args it goes through _execute, timed there
            return str(await super().execute(query, *args, timeout=timeout))
        started = time.perf_counter()
        try:
            return str(await super().execute(query, timeout=timeout))
        finally:
            self.instruments.statement(query, time.perf_counter() - started)


class _TimedAcquire:
    def __init__(self, ctx: Any, instruments: Instrumented) -> None:
        self.ctx, self.instruments = ctx, instruments

    async def __aenter__(self) -> Any:
        started = time.perf_counter()
        conn = await self.ctx.__aenter__()
        if self.instruments.on:
            self.instruments.acquired(time.perf_counter() - started)
        return conn

    async def __aexit__(self, *exc: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self.ctx.__aexit__(*exc)
        finally:
            if self.instruments.on:
                self.instruments.released(time.perf_counter() - started)


class TimedPool(PoolView):
    """Stands in for an asyncpg pool: every acquire, including the pool's own fetch/fetchrow/fetchval/execute
    shortcuts, reports the wait for a connection and its release (which resets the connection: one more
    round trip) to `instruments`."""

    def __init__(self, pool: Any, instruments: Instrumented) -> None:
        super().__init__(pool)
        self._instruments = instruments

    def acquire(self, *args: Any, **kwargs: Any) -> _TimedAcquire:
        return _TimedAcquire(self._pool.acquire(*args, **kwargs), self._instruments)


if __name__ == "__main__":
    if sys.argv[1:2] != ["cron-loop"]:
        sys.exit("usage: python -m bench._common cron-loop --api URL [--api URL]... [--scale S] [--offset N]")
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(cron_loop(sys.argv[2:])))
