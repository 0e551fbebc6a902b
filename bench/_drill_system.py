"""The drill's system, started as a user would start it, as real processes on one scratch database:

- the provider simulator (`periodya provider-sim`) with its fault knobs on;
- two `periodya serve` processes (the API; every job runs inside whichever one a cron call reaches);
- two cron loops (`python -m bench._common cron-loop`) calling the run endpoints of both servers with the cron
  secret: the built-in `periodya scheduler` fires on whole minutes and cannot be sped up, so the drill
  drives the runbook's table in seconds through the same endpoints an external scheduler uses, and the
  two loops overlap on purpose;
- a round-robin webhook relay in the drill itself: the simulator posts to one URL, the relay hands each
  delivery to the next server in turn, so both servers take webhooks. A server that is down answers
  nothing and the relay answers 502: the delivery is lost, as it would be at a real load balancer
  with a dead backend, and reconcile-pull has to heal it.

Secrets (service token, cron secret, webhook secret, provider API key) are generated here and passed
in the environment; nothing depends on `periodya up`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench import _common as c

FAULTS: dict[str, Any] = {"errorRate": 0.10, "dropAfterCreateRate": 0.05, "webhookDropRate": 0.20,
                          "webhookDuplicateRate": 0.20, "webhookDelayMs": 400, "badSignatureRate": 0.02,
                          "latencyMs": 10, "autoSettle": True, "settleDelayMs": 400, "paidRatio": 0.9}
"""The issue's faults: provider errors 10%, lost responses 5%, dropped webhooks 20%, duplicated 20%,
delayed webhooks, bad signatures 2%; payouts settle by themselves, 10% of them failed."""
THRESHOLDS = {"PERIODYA_SENDING_STUCK_MINUTES": "0.05", "PERIODYA_SENT_STUCK_MINUTES": "0.05",
              "PERIODYA_FINALIZE_GRACE_MINUTES": "0.05"}
"""3 s: stuck work is repaired, reconciled and flagged within seconds."""
ADMIN_EMAIL = "drill-admin@example.invalid"


@dataclass
class System:
    database_url: str
    env: dict[str, str]
    sim: str
    apis: list[str]
    serves: list[c.Child]
    crons: list[c.Child]
    children: c.Children
    admin_token: str = ""
    relayed: Counter[str] = field(default_factory=Counter)

    @property
    def killable(self) -> list[c.Child]:
        return [*self.serves, *self.crons]


class Relay:
    """POST /api/webhooks/provider, forwarded byte for byte (body and Stripe-Signature) round-robin."""

    def __init__(self, apis: list[str], counts: Counter[str]) -> None:
        self.apis, self.counts, self._next = apis, counts, itertools.count()
        self.http: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        api = self.apis[next(self._next) % len(self.apis)]
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("stripe-signature", "content-type")}
        assert self.http is not None
        try:
            async with self.http.post(f"{api}/api/webhooks/provider", data=body, headers=headers) as r:
                answer = await r.read()
                self.counts[f"{r.status}"] += 1
                return web.Response(status=r.status, body=answer, content_type=r.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.counts[type(exc).__name__] += 1
            return web.Response(status=502, text="backend down")


@asynccontextmanager
async def relay(apis: list[str], counts: Counter[str]) -> AsyncIterator[str]:
    r = Relay(apis, counts)
    app = web.Application()
    app.router.add_post("/api/webhooks/provider", r.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = c.free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            r.http = http
            yield f"http://127.0.0.1:{port}/api/webhooks/provider"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running(database_url: str, log_dir: Path, *, seed: int, cron_scale: float = 1.0) -> AsyncIterator[System]:
    """Start everything; stop everything on the way out, whatever happened."""
    keys = {"PERIODYA_SERVICE_TOKEN": secrets.token_hex(16), "PERIODYA_CRON_SECRET": secrets.token_hex(16),
            "PERIODYA_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
            "PERIODYA_PROVIDER_API_KEY": "sk_test_" + secrets.token_hex(12)}
    children = c.Children(log_dir)
    try:
        sim_port = c.free_port()
        sim = f"http://127.0.0.1:{sim_port}"
        sim_child = children.periodya("provider-sim", ["provider-sim", "--port", str(sim_port), "--seed", str(seed)],
                                      c.child_env({**keys, "PERIODYA_LOG_LEVEL": "warning"}), ready=f"{sim}/_sim/stats")
        await sim_child.start()
        env = c.child_env({**keys, **THRESHOLDS, "DATABASE_URL": database_url, "PERIODYA_PROVIDER_URL": sim,
                         "PERIODYA_LOG_LEVEL": "warning"})
        ports = [c.free_port(), c.free_port()]
        apis = [f"http://127.0.0.1:{p}" for p in ports]
        serves = [children.periodya(f"serve-{i}", ["serve", "--host", "127.0.0.1", "--port", str(p)], env,
                                    ready=f"{apis[i]}/livez") for i, p in enumerate(ports)]
        await asyncio.gather(*(s.start() for s in serves))
        crons = [children.python(f"cron-{i}", [*c.CRON_LOOP, *(a for api in apis for a in ("--api", api)),
                                               "--offset", str(i), "--scale", str(cron_scale)], env)
                 for i in range(2)]
        system = System(database_url, env, sim, apis, serves, crons, children)
        async with relay(apis, system.relayed) as hook:
            async with aiohttp.ClientSession() as http, http.post(
                    f"{sim}/_sim/config", json={**FAULTS, "webhookUrl": hook, "seed": seed}) as r:
                if r.status != 200:
                    raise RuntimeError(f"simulator config refused: {await r.text()}")
            password = secrets.token_urlsafe(18)
            await c.create_admin(env, ADMIN_EMAIL, password)
            system.admin_token = await c.login(apis[0], ADMIN_EMAIL, password)
            for cron in crons:
                await cron.start()
            yield system
    finally:
        with contextlib.suppress(Exception):
            await children.stop_all()
