"""A live pipeline for tests: the provider simulator (real HTTP), the app receiving its signed webhooks
(real HTTP), the Stripe-protocol adapter, and the runners' dependencies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from periodya.config import Settings
from periodya.deps import Deps
from periodya.domain import escrow, payout
from periodya.eventstore import EventStore
from periodya.handlers import platform
from periodya.handlers.unit_of_work import Meta, run_command
from periodya.http.app import create_app
from periodya.provider.simulator import running_simulator
from periodya.provider.stripe_adapter import StripePayoutsClient

API_KEY = "sk_test_pipeline"
WEBHOOK_SECRET = "whsec_pipeline"
META = Meta(actor="test:pipeline")


@dataclass
class Pipeline:
    deps: Deps
    sim_url: str
    http: aiohttp.ClientSession
    skew: list[timedelta] = field(default_factory=lambda: [timedelta(0)])
    api_url: str = ""
    admin_token: str | None = None

    async def admin(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Call an admin route as a platform admin (created and logged in on first use)."""
        if self.admin_token is None:
            from periodya.admin import sessions, users

            user_id = await users.create_user(self.store, "ops@example.com", "correct horse battery", meta=META)
            self.admin_token, _ = await sessions.create_session(self.store.pool, user_id)
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with self.http.request(method, f"{self.api_url}{path}", headers=headers, **kwargs) as r:
            return r.status, await r.json()

    @property
    def store(self) -> EventStore:
        return self.deps.store

    async def sim_config(self, **knobs: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.sim_url}/_sim/config", json=knobs) as r:
            assert r.status == 200, await r.text()
            return await r.json()  # type: ignore[no-any-return]

    async def sim_stats(self) -> dict[str, Any]:
        async with self.http.get(f"{self.sim_url}/_sim/stats") as r:
            return await r.json()  # type: ignore[no-any-return]

    async def sim_payouts(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.sim_url}/_sim/payouts") as r:
            body = await r.json()
        return body["data"] if isinstance(body, dict) else body  # type: ignore[no-any-return]

    async def settle(self, provider_payout_id: str, status: str) -> None:
        async with self.http.post(f"{self.sim_url}/_sim/payouts/{provider_payout_id}/settle",
                                  json={"status": status}) as r:
            assert r.status == 200, await r.text()

    def advance(self, minutes: float) -> None:
        """Move the runners' clock forward (backoffs expire, thresholds pass) without sleeping."""
        self.skew[0] += timedelta(minutes=minutes)

    async def fund_payee(self, payee_id: str, amount: int, currency: str = "USD") -> None:
        eid = f"esc-{payee_id}"
        await run_command(self.store, META, lambda u: platform.fund_escrow(u, escrow.FundEscrow(eid, amount, currency)))
        await run_command(self.store, META, lambda u: platform.release_escrow(
            u, escrow.ReleaseEscrow(eid, payee_id, amount, 0)))

    async def request(self, payout_id: str, payee_id: str, amount: int, currency: str = "USD") -> None:
        cmd = payout.RequestPayout(payout_id, payee_id, amount, currency, f"ba_{payee_id}")
        await run_command(self.store, META, lambda u: platform.request_payout(u, cmd))

    async def status_counts(self) -> dict[str, int]:
        rows = await self.store.pool.fetch("SELECT status, count(*) FROM payouts GROUP BY status")
        return {r["status"]: r["count"] for r in rows}


@asynccontextmanager
async def live_pipeline(pool: asyncpg.Pool, settings: Settings, *, sim: dict[str, Any] | None = None,
                        seed: int = 7, provider_timeout: float = 5) -> AsyncIterator[Pipeline]:
    settings = settings.with_overrides(webhook_secret=WEBHOOK_SECRET, provider_api_key=API_KEY)
    config = {"autoSettle": False, **(sim or {})}
    async with running_simulator(API_KEY, WEBHOOK_SECRET, seed=seed, config=config) as url, \
            StripePayoutsClient(url, API_KEY, timeout=provider_timeout) as provider, aiohttp.ClientSession() as http:
        skew = [timedelta(0)]
        deps = Deps(EventStore(pool), provider, settings, clock=lambda: datetime.now(UTC) + skew[0])
        server = TestServer(create_app(settings, pool, deps))
        await server.start_server()
        try:
            pipeline = Pipeline(deps, url, http, skew, str(server.make_url("")).rstrip("/"))
            await pipeline.sim_config(webhookUrl=f"{pipeline.api_url}/api/webhooks/provider")
            yield pipeline
        finally:
            await server.close()


async def wait_for(predicate: Any, within: float = 10.0, interval: float = 0.05) -> None:
    """Poll `predicate` until it is true; fail the test if it is not within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while not await predicate():  # noqa: ASYNC110 - polling the database, no event to await
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"condition not met within {within} s") from None
