"""The aiohttp application factory."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from periodya import tracing
from periodya.config import Settings
from periodya.deps import Deps
from periodya.eventstore import EventStore
from periodya.handlers.payout_batch import PayoutBatcher
from periodya.http import (
    admin_auth_routes,
    admin_me_routes,
    admin_payout_routes,
    admin_user_routes,
    audit_routes,
    auth,
    client_ip,
    edge,
    metrics_routes,
    platform_routes,
    route_helpers,
    runbook_routes,
    webhook_routes,
)
from periodya.http.console_routes import routes as console_routes
from periodya.http.deadlines import BODY_TIMEOUT, body_deadline
from periodya.http.middleware import request_context
from periodya.http.openapi import setup as setup_openapi
from periodya.http.readiness import setup as setup_readiness
from periodya.provider.port import ProviderUnavailable


class NoProvider:
    """Stands in when no provider is configured: health and alerts work, provider calls say unavailable."""

    async def _unavailable(self, *_args: object, **_kwargs: object) -> Any:
        raise ProviderUnavailable("no payout provider is configured (PERIODYA_PROVIDER_URL)")

    create_payout = retrieve_payout = find_by_payout_id = list_payouts = _unavailable


async def _liveness(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(settings: Settings, pool: asyncpg.Pool, deps: Deps | None = None) -> web.Application:
    """Build the app around an open pool (the caller owns the pool's lifetime). `deps` (provider and
    clock for the jobs) enables the ops endpoints that call the provider."""
    traced = tracing.middlewares()  # first: when tracing is on, it sets up the server-span middleware
    app = web.Application(middlewares=[*traced, metrics_routes.count_requests, request_context, auth.auth_middleware,
                                       body_deadline],
                          client_max_size=256 * 1024)
    edge.install(app)  # Server, nosniff and no-store headers on every answer
    app[BODY_TIMEOUT] = settings.body_timeout
    app[route_helpers.DEPS] = deps or Deps(EventStore(pool), NoProvider(), settings)
    app[route_helpers.STORE] = store = EventStore(pool)
    app[platform_routes.PAYOUTS] = payouts = PayoutBatcher(store)

    async def _drain_payouts(_app: web.Application) -> None:
        await payouts.drain()

    app.on_shutdown.append(_drain_payouts)
    app[auth.SERVICE_TOKEN] = settings.service_token
    app[auth.CRON_SECRET] = settings.cron_secret
    app[client_ip.TRUSTED_PROXIES] = settings.trusted_proxies
    app.router.add_get("/livez", _liveness)
    app[webhook_routes.SETTINGS_KEY] = settings
    app.add_routes(platform_routes.routes)
    app[auth.SESSION_VERIFIER] = admin_auth_routes.verify_session
    app[admin_auth_routes.SESSION_TTL] = admin_auth_routes.session_ttl_from_env()
    app[admin_auth_routes.SESSION_IDLE] = admin_auth_routes.session_idle_from_env()
    app.add_routes(admin_auth_routes.routes)
    webhook_routes.setup(app, store)
    app.add_routes(runbook_routes.routes)
    app.add_routes(audit_routes.routes)
    app.add_routes(admin_payout_routes.routes)
    app.add_routes(admin_user_routes.routes)
    app.add_routes(admin_me_routes.routes)
    app.add_routes(console_routes)  # the ops console under /ops/
    metrics_routes.setup(app, settings, app[route_helpers.DEPS])
    setup_readiness(app)  # GET /readyz
    setup_openapi(app)  # GET /openapi.json (built from the routes above) and /docs
    return app
