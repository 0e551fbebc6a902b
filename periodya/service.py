"""Wiring of the running system: pool, provider, runner dependencies, HTTP site, simulator for `up`."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
from aiohttp import web

from periodya import db
from periodya.config import Settings
from periodya.errors import ConfigError
from periodya.eventstore import EventStore
from periodya.http.app import create_app
from periodya.http.edge import EdgeRunner
from periodya.provider.stripe_adapter import StripePayoutsClient
from periodya.runners.base import Deps


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for a clean shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def open_pool(settings: Settings, *, check_schema: bool = True, **kwargs: object) -> asyncpg.Pool:
    url = db.resolve_database_url(settings.database_url, settings.data_dir)
    pool = await db.connect_pool(url, **kwargs)  # type: ignore[arg-type]
    if check_schema:
        try:
            async with pool.acquire() as conn:
                await db.ensure_schema(conn)
        except ConfigError:
            await pool.close()
            raise
    return pool


@asynccontextmanager
async def runner_deps(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Deps]:
    if not settings.provider_url:
        raise ConfigError("PERIODYA_PROVIDER_URL is required to run jobs (or use `periodya up`)")
    async with StripePayoutsClient(settings.provider_url, settings.provider_api_key or "", timeout=10) as client:
        yield Deps(EventStore(pool), client, settings)


@asynccontextmanager
async def http_site(settings: Settings, pool: asyncpg.Pool, deps: Deps | None = None) -> AsyncIterator[str]:
    """Serve the API on settings.host:settings.port until the context exits; yields the base URL."""
    app = create_app(settings, pool, deps)
    runner = EdgeRunner(app, access_log=None, shutdown_timeout=10)  # problem+json below the middlewares too
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def embedded_provider(settings: Settings, stack: AsyncExitStack) -> AsyncIterator[Settings]:
    """For `up` with no provider configured: run the simulator in-process (auto-settling, paid) and point
    the settings at it, with generated secrets unless some are configured."""
    from periodya.provider.simulator import running_simulator

    secret = settings.webhook_secret or f"whsec_{secrets.token_hex(16)}"
    key = settings.provider_api_key or f"sk_sim_{secrets.token_hex(12)}"
    hook = f"http://{settings.host}:{settings.port}/api/webhooks/provider"
    url = await stack.enter_async_context(
        running_simulator(key, secret, webhook_url=hook, config={"autoSettle": True, "settleDelayMs": 2000}))
    yield settings.with_overrides(provider_url=url, provider_api_key=key, webhook_secret=secret)
