"""The wiring every layer may import: what a job or an ops request runs with (store, provider, settings,
clock), and how the processes open them (the pool, the provider client). Imports no layer above eventstore
and provider, so handlers/ and http/ take their dependencies from here, not from runners/."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from periodya import db
from periodya.config import Settings
from periodya.errors import ConfigError
from periodya.eventstore import EventStore
from periodya.provider.port import PayoutProvider
from periodya.provider.stripe_adapter import StripePayoutsClient

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    store: EventStore
    provider: PayoutProvider
    settings: Settings
    clock: Clock = utc_now

    def minutes_ago(self, minutes: float) -> datetime:
        return self.clock() - timedelta(minutes=minutes)


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
    provider = settings.provider_endpoint()
    if not provider:
        raise ConfigError("PERIODYA_PROVIDER_URL is required to run jobs (or use `periodya up`)")
    async with StripePayoutsClient(provider, settings.provider_api_key or "", timeout=10) as client:
        yield Deps(EventStore(pool), client, settings)
