"""Shared by every benchmark: which server, scratch databases, concurrency drivers, a table printer.

Drivers run N workers against one operation, either for a fixed duration or a fixed total count, and
return a `Result` (ops/s, p50/p99 latency). `drive_async` runs coroutines on the running event loop
(asyncpg, EventStore); `drive_threads` runs a blocking callable on N threads (synchronous libraries
such as eventsourcing). Both take an optional warm-up, run first and not recorded, so pools are open
and statements prepared before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlparse, urlunparse

import aiohttp
import asyncpg
import orjson

from periodya import db
from periodya.config import validate_database_url
from periodya.errors import ConfigError

AsyncOp = Callable[[int], Awaitable[object]]
"""One operation of worker `n`: `await op(n)`. Make ids unique per call (e.g. a counter in a closure)."""
SyncOp = Callable[[int], object]


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

async def _admin(url: str, sql: str) -> None:
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
    await _admin(server, f'CREATE DATABASE "{name}"')
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
            await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


async def await_ready(proc: asyncio.subprocess.Process, http: aiohttp.ClientSession, probe: str, *,
                      seconds: float) -> str | None:
    """Poll GET `probe` until it answers 200 (None), the process exits first ("exited") or `seconds` pass
    ("did not start"; the process is left running, for the caller to stop)."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.returncode is not None:
            return "exited"
        try:
            async with http.get(probe) as r:
                if r.status == 200:
                    return None
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            return "did not start"
        await asyncio.sleep(0.05)


async def stop_process(proc: asyncio.subprocess.Process, *, grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace` seconds."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()


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


# --- instrumented connections and pools (bench code only) -----------------------------------------

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
