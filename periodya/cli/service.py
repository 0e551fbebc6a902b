"""The running system's processes: signals, the HTTP site, secrets and the simulator for `up` (the pool and
the runners' dependencies are periodya/deps.py's)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
from aiohttp import web

from periodya.config import Settings
from periodya.deps import Deps
from periodya.errors import ConfigError
from periodya.http.app import create_app
from periodya.http.edge import EdgeRunner


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for a clean shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


@asynccontextmanager
async def http_site(settings: Settings, pool: asyncpg.Pool, deps: Deps | None = None) -> AsyncIterator[str]:
    """Serve the API on settings.host:settings.port until the context exits; yields the base URL."""
    app = create_app(settings, pool, deps)
    # keepalive_timeout bounds both idle keep-alive and the time to send a request's headers
    # (periodya/http/deadlines.py); the body has its own limit in the app. EdgeRunner: problem+json
    # for what aiohttp's parser refuses too (periodya/http/edge.py).
    runner = EdgeRunner(app, access_log=None, shutdown_timeout=10, keepalive_timeout=settings.header_timeout)
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


def ensure_up_secrets(settings: Settings) -> Settings:
    """For `up`: generate every secret still missing (once; kept in `<data dir>/secrets.env`, reused on the
    next start) and return the settings that use them. The provider's key and webhook secret only when
    `up` runs the simulator itself."""
    from periodya import localsecrets as ls

    wanted = [ls.SERVICE_TOKEN, ls.CRON_SECRET] + ([] if settings.provider_url else [ls.WEBHOOK_SECRET,
                                                                                      ls.PROVIDER_API_KEY])
    present = {ls.SERVICE_TOKEN: settings.service_token, ls.CRON_SECRET: settings.cron_secret,
               ls.WEBHOOK_SECRET: settings.webhook_secret, ls.PROVIDER_API_KEY: settings.provider_api_key}
    new = ls.ensure(settings.data_dir, wanted, present)
    return settings.with_overrides(service_token=new.get(ls.SERVICE_TOKEN), cron_secret=new.get(ls.CRON_SECRET),
                                   webhook_secret=new.get(ls.WEBHOOK_SECRET),
                                   provider_api_key=new.get(ls.PROVIDER_API_KEY))


@asynccontextmanager
async def embedded_provider(settings: Settings, stack: AsyncExitStack) -> AsyncIterator[Settings]:
    """For `up` with no provider configured: run the simulator in-process (auto-settling, paid) on loopback,
    port `PERIODYA_SIM_PORT` (default 8081), with the secrets of `ensure_up_secrets`."""
    from periodya.provider.simulator import running_simulator

    if not (settings.webhook_secret and settings.provider_api_key):
        raise ConfigError("the simulator needs PERIODYA_WEBHOOK_SECRET and PERIODYA_PROVIDER_API_KEY")
    hook = f"http://{_loopback(settings.host)}:{settings.port}/api/webhooks/provider"
    try:
        url = await stack.enter_async_context(running_simulator(
            settings.provider_api_key, settings.webhook_secret, webhook_url=hook, port=settings.sim_port,
            config={"autoSettle": True, "settleDelayMs": 2000}))
    except OSError as exc:
        raise ConfigError(f"the provider simulator cannot listen on 127.0.0.1:{settings.sim_port}: "
                          f"{exc.strerror or exc} (set PERIODYA_SIM_PORT)") from None
    yield settings.with_overrides(provider_url=url)


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
