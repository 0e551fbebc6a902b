"""`bench pipeline`'s system around the runners, and the instruments of its profiling pass.

The provider simulator and the API that takes the payout requests and receives the webhooks run as
separate processes (`separate_processes`) or in this process (`same_process`, --layout inproc). The
instruments count nothing until the instrumented pass switches them on: SQL round trips and pool waits
filed under the job in `JOB`, the outbox's three batch steps (`outbox_steps`), the provider calls.
"""

from __future__ import annotations

import contextvars
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import _common as c
from periodya import db
from periodya.config import Settings
from periodya.runners import outbox

API_KEY = "sk_bench_pipeline"
WEBHOOK_SECRET = "whsec_bench_pipeline"
SERVICE_TOKEN = "bench-pipeline-service-token"
SIM_KNOBS: dict[str, Any] = {
    "latencyMs": 0, "autoSettle": True, "settleDelayMs": 0, "paidRatio": 1.0, "errorRate": 0.0,
    "rejectCreateRate": 0.0, "dropAfterCreateRate": 0.0, "webhookDropRate": 0.0, "webhookDuplicateRate": 0.0,
    "webhookDelayMs": 0, "badSignatureRate": 0.0}
SCHEDULER_POOL = 10  # `periodya scheduler` / `serve`: db.connect_pool's default max size


# ============================================================================================
# Instruments (the profiling pass only): SQL round trips and pool waits per job, outbox steps, provider calls
# ============================================================================================

JOB: contextvars.ContextVar[str] = contextvars.ContextVar("bench_pipelineJOB", default="other")


@dataclass
class Instruments:
    on: bool = False
    statements: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    acquires: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    steps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    provider_ms: list[float] = field(default_factory=list)

    def statement(self, query: str, elapsed: float) -> None:
        if self.on:
            entry = self.statements[(JOB.get(), c.statement_key(query))]
            entry[0] += 1
            entry[1] += elapsed

    def acquired(self, waited: float) -> None:
        entry = self.acquires[JOB.get()]
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
    """Every statement round trip timed into INSTRUMENTS, filed under the job in `JOB`."""

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
            token, started = JOB.set(name), time.perf_counter()
            try:
                return await inner(*args)
            finally:
                _step(name, started)
                JOB.reset(token)

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


@asynccontextmanager
async def separate_processes(url: str, workdir: Path, log_level: str) -> AsyncIterator[Parts]:
    sim_port, api_port = c.free_port(), c.free_port()
    sim_url, api_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{api_port}"
    async with c.children(workdir) as procs:
        sim = procs.periodya("provider-sim", ["provider-sim", "--host", "127.0.0.1", "--port", str(sim_port)],
                             c.child_env({"PERIODYA_WEBHOOK_SECRET": WEBHOOK_SECRET,
                                          "PERIODYA_PROVIDER_API_KEY": API_KEY, "PERIODYA_LOG_LEVEL": log_level}),
                             ready=f"{sim_url}/_sim/config")
        await sim.start()
        api = procs.periodya("serve", ["serve", "--host", "127.0.0.1", "--port", str(api_port)],
                             c.child_env({"DATABASE_URL": url, "PERIODYA_WEBHOOK_SECRET": WEBHOOK_SECRET,
                                          "PERIODYA_SERVICE_TOKEN": SERVICE_TOKEN, "PERIODYA_LOG_LEVEL": log_level}),
                             ready=f"{api_url}/livez")
        await api.start()
        yield Parts(sim_url, api_url, [
            f"simulator:   separate process pid {sim.pid}: python -m periodya provider-sim ({sim_url})",
            f"API:         separate process pid {api.pid}: python -m periodya serve ({api_url}; its own pool, "
            f"max {SCHEDULER_POOL}), receives POST /api/payouts and POST /api/webhooks/provider"],
            {"simulator": sim.pid, "API": api.pid}, [*sim.logs, *api.logs])


@asynccontextmanager
async def same_process(url: str, settings: Settings) -> AsyncIterator[Parts]:
    from aiohttp import web

    from periodya.http.app import create_app
    from periodya.provider.simulator import running_simulator

    @web.middleware
    async def intake(request: web.Request, handler: Any) -> web.StreamResponse:
        # its SQL is counted as the route's in the instrumented pass (a group commit's batch task runs in a
        # fresh context: its SQL is filed under "other")
        token = JOB.set(INTAKE if request.path.startswith("/api/webhooks") else "request")
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            JOB.reset(token)

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
