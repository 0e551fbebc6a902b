"""Real processes for the e2e tests: `periodya provider-sim`, `periodya serve`, `periodya run JOB`,
`periodya admin create-user`, each started with `python -m periodya` on a free port, with the test's
database and secrets in its environment. Every process's output goes to a log file (never a pipe that
could fill up); `System` bundles a simulator and a server with an HTTP client and a logged-in admin.

Every process started here is stopped in a `finally` (SIGTERM, then SIGKILL after a timeout). `log_dir`
arguments name an existing directory (a test's tmp_path).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import CRON_SECRET, SERVICE_TOKEN, with_database

API_KEY = "sk_test_e2e_procs"
WEBHOOK_SECRET = "whsec_e2e_procs"
ADMIN_EMAIL = "ops@example.com"
ADMIN_PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"
FAST = {"PERIODYA_SENDING_STUCK_MINUTES": "0.02", "PERIODYA_SENT_STUCK_MINUTES": "0.02",
        "PERIODYA_FINALIZE_GRACE_MINUTES": "0.02"}
"""Thresholds of 1.2 s, so a drill's symptoms show up in seconds."""
SIM_DEFAULTS: dict[str, Any] = {"latencyMs": 0, "errorRate": 0.0, "dropAfterCreateRate": 0.0, "autoSettle": False,
                                "webhookDropRate": 0.0, "webhookDuplicateRate": 0.0, "webhookDelayMs": 0,
                                "badSignatureRate": 0.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def base_env(database_url: str | None = None, provider_url: str | None = None,
             extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every periodya process: the test database, the provider, both bearer secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERIODYA_") and k != "DATABASE_URL"}
    env.update({"PERIODYA_PROVIDER_API_KEY": API_KEY, "PERIODYA_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "PERIODYA_SERVICE_TOKEN": SERVICE_TOKEN, "PERIODYA_CRON_SECRET": CRON_SECRET,
                "PERIODYA_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"})
    if database_url:
        env["DATABASE_URL"] = database_url
    if provider_url:
        env["PERIODYA_PROVIDER_URL"] = provider_url
    env.update(extra or {})
    return env


@dataclass
class Proc:
    """One child process; its stdout and stderr go to `log`."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def wait(self, seconds: float = 60.0) -> int:
        return await asyncio.wait_for(self.process.wait(), seconds)

    async def kill(self) -> int:
        """SIGKILL: no cleanup, no goodbye, exactly a crash."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
        return await self.wait()

    async def stop(self, seconds: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in `seconds`."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                return await self.wait(seconds)
            except TimeoutError:
                return await self.kill()
        return self.process.returncode


async def spawn(name: str, args: list[str], env: Mapping[str, str], log_dir: Path, *,
                stdin: bytes | None = None) -> Proc:
    log = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "periodya", *args, env=dict(env), stdout=out, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL)
    if stdin is not None:
        assert process.stdin is not None
        process.stdin.write(stdin)
        await process.stdin.drain()
        process.stdin.close()
    return Proc(name, process, log)


async def wait_http(url: str, proc: Proc, seconds: float = 30.0) -> None:
    """Poll `url` until it answers 200; fail at once (with the process's output) if the process dies."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while True:
            assert proc.running, f"{proc.name} exited with {proc.process.returncode}:\n{proc.output()}"
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"{proc.name} not ready at {url}:\n{proc.output()}"
            await asyncio.sleep(0.05)


async def start_sim(log_dir: Path, *, port: int | None = None, webhook_url: str | None = None) -> tuple[Proc, str]:
    """`periodya provider-sim` on a free port; returns the process and its base URL."""
    port = port or free_port()
    args = ["provider-sim", "--port", str(port)] + (["--webhook-url", webhook_url] if webhook_url else [])
    proc = await spawn("provider-sim", args, base_env(), log_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{url}/_sim/stats", proc)
    except BaseException:
        await proc.stop()
        raise
    return proc, url


async def start_server(env: Mapping[str, str], log_dir: Path, *, port: int | None = None) -> tuple[Proc, str]:
    """`periodya serve` on a free port (ready when GET /livez answers); returns the process and base URL."""
    port = port or free_port()
    proc = await spawn("serve", ["serve", "--host", "127.0.0.1", "--port", str(port)], env, log_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{url}/livez", proc)
    except BaseException:
        await proc.stop()
        raise
    return proc, url


@dataclass(frozen=True)
class JobRun:
    returncode: int
    summary: dict[str, Any]
    output: str


async def run_job(env: Mapping[str, str], log_dir: Path, job: str, *args: str, seconds: float = 60.0) -> JobRun:
    """`periodya run JOB [args]` to completion; its summary is the JSON on the last line of its output."""
    proc = await spawn(f"run-{job}", ["run", job, *args], env, log_dir)
    try:
        code = await proc.wait(seconds)
    finally:
        await proc.stop()
    out = proc.output()
    summary: dict[str, Any] = {}
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            summary = json.loads(line)
            break
    return JobRun(code, summary, out)


async def paused_job(env: Mapping[str, str], log_dir: Path, point: str, job: str, *args: str,
                     seconds: float = 30.0) -> tuple[Proc, str]:
    """Start `periodya run JOB` with the fault hook armed at `point`; return once it is paused there, with
    the detail it wrote (e.g. the provider payout id). The caller kills it."""
    marker = log_dir / f"fault-{uuid.uuid4().hex[:8]}"
    proc = await spawn(f"run-{job}-paused", ["run", job, *args],
                       {**env, "PERIODYA_FAULT_PAUSE": point, "PERIODYA_FAULT_FILE": str(marker)}, log_dir)
    deadline = time.monotonic() + seconds
    try:
        while not (marker.exists() and marker.read_text()):
            assert proc.running, f"{proc.name} exited before reaching {point}:\n{proc.output()}"
            assert time.monotonic() < deadline, f"{proc.name} never reached {point}:\n{proc.output()}"
            await asyncio.sleep(0.02)
    except BaseException:
        await proc.kill()
        raise
    return proc, marker.read_text()


async def create_user(env: Mapping[str, str], log_dir: Path, email: str, password: str,
                      roles: tuple[str, ...] = ()) -> str:
    """`periodya admin create-user EMAIL --password-stdin [--role R]...`; returns the new user id."""
    args = ["admin", "create-user", email, "--password-stdin", *[a for r in roles for a in ("--role", r)]]
    proc = await spawn("create-user", args, env, log_dir, stdin=(password + "\n").encode())
    try:
        code = await proc.wait(60)
    finally:
        await proc.stop()
    out = proc.output()
    assert code == 0, out
    return out.strip().splitlines()[-1]


async def eventually(probe: Callable[[], Awaitable[Any]], what: str, seconds: float = 15.0,
                     interval: float = 0.1) -> Any:
    """Poll `probe` until it returns something truthy; return that."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {last!r}"
        await asyncio.sleep(interval)


@dataclass
class System:
    """A running provider simulator and `periodya serve` on one test database, plus an HTTP client."""

    api: str
    sim: str
    env: dict[str, str]
    http: aiohttp.ClientSession
    log_dir: Path
    server: Proc
    admin_token: str = ""
    procs: list[Proc] = field(default_factory=list)

    # --- HTTP helpers --------------------------------------------------------------------------------
    async def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, f"{self.api}{path}", headers=headers, **kwargs) as r:
            text = await r.text()
            body = json.loads(text) if text and r.content_type.endswith("json") else text
            return r.status, body

    async def admin(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call(method, path, self.admin_token, **kwargs)

    async def cron(self, job: str, query: str = "") -> dict[str, Any]:
        """POST /api/admin/ops/run/JOB with the cron secret, as the cron runner does; expects 200."""
        status, body = await self.call("POST", f"/api/admin/ops/run/{job}{query}", CRON_SECRET)
        assert status == 200, (status, body)
        return body  # type: ignore[no-any-return]

    async def platform(self, method: str, path: str, body: Any = None, *, key: str | None = None) -> Any:
        headers = {"Idempotency-Key": key} if key else {}
        status, out = await self.call(method, path, SERVICE_TOKEN, json=body, headers=headers)
        assert status in (200, 201), (method, path, status, out)
        return out

    async def health(self) -> dict[str, Any]:
        status, body = await self.admin("GET", "/api/admin/ops/health")
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def alerts(self, query: str = "") -> list[dict[str, Any]]:
        status, body = await self.admin("GET", f"/api/admin/ops/alerts{query}")
        assert status == 200, body
        return body["alerts"]  # type: ignore[no-any-return]

    async def payout(self, payout_id: str) -> dict[str, Any]:
        return await self.platform("GET", f"/api/payouts/{payout_id}")  # type: ignore[no-any-return]

    async def payout_events(self, payout_id: str) -> list[dict[str, Any]]:
        return (await self.platform("GET", f"/api/payouts/{payout_id}/events"))["events"]  # type: ignore[no-any-return]

    async def balances(self, payee_id: str) -> dict[str, dict[str, int]]:
        body = await self.platform("GET", f"/api/payees/{payee_id}/balances")
        return {b["currency"]: {"available": b["available"], "inFlight": b["inFlight"]} for b in body["balances"]}

    # --- the platform's commands ---------------------------------------------------------------------
    async def fund_payee(self, payee_id: str, amount: int, *, fee: int = 0, currency: str = "USD") -> None:
        """Capture `amount + fee` into an escrow and release `amount` to the payee (and `fee` to revenue)."""
        escrow_id = f"esc-{payee_id}-{uuid.uuid4().hex[:6]}"
        await self.platform("POST", "/api/escrows", {"escrowId": escrow_id, "amount": amount + fee,
                                                     "currency": currency})
        await self.platform("POST", f"/api/escrows/{escrow_id}/release",
                            {"payeeId": payee_id, "amount": amount, "feeAmount": fee})

    async def request_payout(self, payee_id: str, amount: int, currency: str = "USD") -> dict[str, Any]:
        return await self.platform(  # type: ignore[no-any-return]
            "POST", "/api/payouts", {"payeeId": payee_id, "amount": amount, "currency": currency,
                                     "destination": f"ba_{payee_id}"}, key=uuid.uuid4().hex)

    # --- the simulator -------------------------------------------------------------------------------
    async def sim_config(self, **knobs: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.sim}/_sim/config", json=knobs) as r:
            assert r.status == 200, await r.text()
            return await r.json()  # type: ignore[no-any-return]

    async def sim_stats(self) -> dict[str, int]:
        async with self.http.get(f"{self.sim}/_sim/stats") as r:
            return await r.json()  # type: ignore[no-any-return]

    async def sim_payouts(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.sim}/_sim/payouts") as r:
            return (await r.json())["data"]  # type: ignore[no-any-return]

    async def settle(self, provider_payout_id: str, status: str = "paid") -> None:
        async with self.http.post(f"{self.sim}/_sim/payouts/{provider_payout_id}/settle",
                                  json={"status": status}) as r:
            assert r.status == 200, await r.text()

    # --- runner processes ----------------------------------------------------------------------------
    def job_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    async def run(self, job: str, *args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """`periodya run JOB` as a separate process; expects exit 0 and returns its summary."""
        result = await run_job(self.job_env(env), self.log_dir, job, *args)
        assert result.returncode == 0, result.output
        return result.summary

    async def paused(self, point: str, job: str, *args: str, env: Mapping[str, str] | None = None
                     ) -> tuple[Proc, str]:
        proc, detail = await paused_job(self.job_env(env), self.log_dir, point, job, *args)
        self.procs.append(proc)
        return proc, detail

    async def login(self, email: str, password: str) -> str:
        status, body = await self.call("POST", "/api/auth/login", None, json={"email": email, "password": password})
        assert status == 200, body
        return body["token"]  # type: ignore[no-any-return]


@asynccontextmanager
async def fresh_database(server_url: str, template: str, prefix: str = "e2e") -> AsyncIterator[str]:
    """A database cloned from the test session's migrated template (for module-scoped fixtures; the
    per-test `database_url` fixture does the same per test); dropped on the way out."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        try:
            yield with_database(server_url, name)
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def reset_sim(http: aiohttp.ClientSession, sim_url: str, webhook_url: str | None,
                    **knobs: Any) -> None:
    """Forget the simulator's payouts and counters and set every knob (defaults unless given)."""
    async with http.post(f"{sim_url}/_sim/reset") as r:
        assert r.status == 200, await r.text()
    async with http.post(f"{sim_url}/_sim/config", json={**SIM_DEFAULTS, "webhookUrl": webhook_url, **knobs}) as r:
        assert r.status == 200, await r.text()


@asynccontextmanager
async def running_system(database_url: str, log_dir: Path, *, sim_url: str | None = None,
                         env: Mapping[str, str] | None = None, sim: Mapping[str, Any] | None = None,
                         admin: bool = True) -> AsyncIterator[System]:
    """A simulator (started here unless `sim_url` names a running one, which is then reset) and a
    `periodya serve` process on `database_url`; the simulator's webhooks go to the server. With `admin`,
    a platform admin is created with the real CLI and logged in over HTTP."""
    procs: list[Proc] = []
    port = free_port()
    hook = f"http://127.0.0.1:{port}/api/webhooks/provider"
    try:
        async with aiohttp.ClientSession() as http:
            if sim_url is None:
                sim_proc, sim_url = await start_sim(log_dir)
                procs.append(sim_proc)
            await reset_sim(http, sim_url, hook, **(sim or {}))
            proc_env = base_env(database_url, sim_url, {**FAST, **(env or {})})
            server, api = await start_server(proc_env, log_dir, port=port)
            procs.append(server)
            system = System(api, sim_url, proc_env, http, log_dir, server, procs=procs)
            if admin:
                await create_user(proc_env, log_dir, ADMIN_EMAIL, ADMIN_PASSWORD)
                system.admin_token = await system.login(ADMIN_EMAIL, ADMIN_PASSWORD)
            yield system
    finally:
        for proc in reversed(procs):
            await proc.stop()
