"""The provider simulator: a real aiohttp server speaking the Stripe payouts subset, with fault knobs.

`/v1/...` is the Stripe subset (bearer API key, Idempotency-Key, form bodies, Stripe error bodies);
`/_sim/...` is the unauthenticated control plane for tests and drills (bind it to localhost).
`create_sim_app` builds the app; `running_simulator` serves it in-process on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from periodya.logging import get_logger
from periodya.provider import sim_control
from periodya.provider.sim_config import SimConfig
from periodya.provider.sim_state import SimRequestError, SimState
from periodya.provider.sim_webhooks import Background, WebhookSender

log = get_logger("periodya.provider.sim")
MAX_LIST_LIMIT = 100


class Simulator:
    """State, webhook sender and background tasks of one simulator instance.

    `api_key=None` accepts any non-empty bearer key (like stripe-mock); otherwise only that key.
    """

    def __init__(self, api_key: str | None, webhook_secret: str, *, webhook_url: str | None = None,
                 seed: int | None = None, config: Mapping[str, Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.api_key = api_key
        self.state = SimState(config=SimConfig(), clock=clock, rng=random.Random(seed))
        self.state.configure({"webhookUrl": webhook_url, "seed": seed, **(config or {})})
        self.background = Background()
        self.webhooks = WebhookSender(webhook_secret, self.state.stats, self.background, clock)

    def authenticate(self, authorization: str | None) -> None:
        scheme, _, key = (authorization or "").partition(" ")
        valid = scheme.lower() == "bearer" and bool(key) and (
            self.api_key is None or secrets.compare_digest(key.encode(), self.api_key.encode()))
        if not valid:
            raise SimRequestError(401, "invalid_request_error", "Invalid API Key provided.", "api_key_invalid")

    def settle(self, payout_id: str, status: str, failure_code: str | None = None,
               failure_message: str | None = None) -> dict[str, Any]:
        """Change a payout's status and send the webhook for it, subject to the webhook knobs."""
        event = self.state.transition(payout_id, status, failure_code, failure_message)
        self.webhooks.schedule(self.state.plan_delivery(event))
        return event

    async def settle_later(self, payout_id: str, status: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        payout = self.state.payouts.get(payout_id)
        if payout is not None and payout.status == "pending":  # a manual settle may have come first
            self.settle(payout_id, status)

    async def aclose(self) -> None:
        await self.background.aclose()
        await self.webhooks.close()


SIM = web.AppKey("simulator", Simulator)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def stripe_front(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For /v1: latency, bearer auth, injected 500s, and every error as a Stripe error body."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    sim = request.app[SIM]
    try:
        if sim.state.config.latency_ms:
            await request.read()  # the provider has the whole request before it starts to "think"
            await asyncio.sleep(sim.state.config.latency_ms / 1000)
        sim.authenticate(request.headers.get("Authorization"))
        if sim.state.roll(sim.state.config.error_rate):
            sim.state.stats["errorsInjected"] += 1
            raise SimRequestError(500, "api_error", "Simulated provider error; nothing was done.")
        return await handler(request)
    except SimRequestError as exc:
        return web.json_response(exc.body, status=exc.status)
    except web.HTTPException as exc:
        body = {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL ({exc.reason})."}}
        return web.json_response(body, status=exc.status)


def _form_params(form: Mapping[str, Any]) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in form.items():
        if isinstance(value, str):
            params.setdefault(key, value)
    return params


async def create_payout(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    if sim.state.roll(sim.state.config.reject_create_rate):
        sim.state.stats["rejectsInjected"] += 1
        raise SimRequestError(400, "invalid_request_error", "No such external account: the destination was closed.",
                              "resource_missing", "destination")
    created = sim.state.create(_form_params(await request.post()), request.headers.get("Idempotency-Key"))
    if created.settle_as is not None:
        sim.background.spawn(sim.settle_later(created.body["id"], created.settle_as,
                                              sim.state.config.settle_delay_ms / 1000))
    if created.drop_connection and request.transport is not None:
        # The payout exists; the client must see the connection die without an answer.
        log.debug("sim_dropped_after_create", provider_payout_id=created.body["id"])
        request.transport.abort()
        return web.Response(status=500)
    headers = {"Idempotent-Replayed": "true"} if created.replayed else {}
    return web.json_response(created.body, headers=headers)


async def retrieve_payout(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIM].state.get(request.match_info["id"]).wire())


async def list_payouts(request: web.Request) -> web.StreamResponse:
    raw = request.query.get("limit", "10")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise SimRequestError(400, "invalid_request_error", f"limit must be between 1 and {MAX_LIST_LIMIT}",
                              "parameter_invalid_integer", "limit")
    page, has_more = request.app[SIM].state.page(int(raw), request.query.get("starting_after") or None)
    return web.json_response({"object": "list", "url": "/v1/payouts", "has_more": has_more,
                              "data": [p.wire() for p in page]})


def create_sim_app(api_key: str | None, webhook_secret: str, webhook_url: str | None = None,
                   seed: int | None = None, *, config: Mapping[str, Any] | None = None) -> web.Application:
    """The simulator as an aiohttp app. `config` takes initial knobs (camelCase, as POST /_sim/config)."""
    if not webhook_secret:
        raise ValueError("the simulator needs a webhook secret to sign with")
    sim = Simulator(api_key, webhook_secret, webhook_url=webhook_url, seed=seed, config=config)
    app = web.Application(middlewares=[stripe_front])
    app[SIM] = sim

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        yield
        await sim.aclose()

    app.cleanup_ctx.append(lifetime)
    app.router.add_post("/v1/payouts", create_payout)
    app.router.add_get("/v1/payouts", list_payouts)
    app.router.add_get("/v1/payouts/{id}", retrieve_payout)
    sim_control.add_routes(app.router, lambda request: request.app[SIM])
    return app


@asynccontextmanager
async def running_simulator(api_key: str | None, webhook_secret: str, *, webhook_url: str | None = None,
                            seed: int | None = None, config: Mapping[str, Any] | None = None,
                            host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve a simulator in this event loop; yields its base URL (port 0 = an ephemeral port)."""
    runner = web.AppRunner(create_sim_app(api_key, webhook_secret, webhook_url, seed, config=config),
                           access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host if ':' not in bound_host else f'[{bound_host}]'}:{bound_port}"
    finally:
        await runner.cleanup()
