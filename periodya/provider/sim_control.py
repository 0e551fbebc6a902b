"""The simulator's control plane, `/_sim/...`: knobs, stats, manual settlement, inspection, resend.

Unauthenticated by design (a test and drill tool); errors are `{"error": "..."}` JSON with a 4xx.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import pydantic
from aiohttp import web

from periodya.provider.sim_state import Delivery, SimRequestError, SimState
from periodya.provider.sim_webhooks import Background, WebhookSender


class Controlled(Protocol):
    """What the control plane drives: periodya/provider/simulator.py's Simulator (which adds these routes)."""

    state: SimState
    background: Background
    webhooks: WebhookSender

    def settle(self, payout_id: str, status: str, failure_code: str | None = None,
               failure_message: str | None = None) -> dict[str, Any]: ...

SETTLE_STATUSES = ("paid", "failed", "canceled", "in_transit")


def _problem(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise web.HTTPBadRequest(text='{"error":"the body is not JSON"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error":"the body must be a JSON object"}', content_type="application/json")
    return body


def add_routes(router: web.UrlDispatcher, sim: Callable[[web.Request], Controlled]) -> None:
    """Register every /_sim route; `sim` finds the simulator of a request's app."""

    async def get_config(request: web.Request) -> web.Response:
        return web.json_response(sim(request).state.config.public())

    async def set_config(request: web.Request) -> web.Response:
        changes = await _json_object(request)
        try:
            config = sim(request).state.configure(changes)
        except pydantic.ValidationError as exc:
            return _problem(400, "invalid config", details=json.loads(exc.json(include_url=False)))
        return web.json_response(config.public())

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(sim(request).state.counters())

    async def payouts(request: web.Request) -> web.Response:
        data = [p.wire() for p in sim(request).state.payouts.values()]
        return web.json_response({"object": "list", "count": len(data), "data": data})

    async def events(request: web.Request) -> web.Response:
        data = list(sim(request).state.events.values())
        return web.json_response({"object": "list", "count": len(data), "data": data})

    async def settle(request: web.Request) -> web.Response:
        body = await _json_object(request)
        status = body.get("status")
        if status not in SETTLE_STATUSES:
            return _problem(400, f"status must be one of {', '.join(SETTLE_STATUSES)}")
        code, message = body.get("failureCode"), body.get("failureMessage")
        if not all(v is None or isinstance(v, str) for v in (code, message)):
            return _problem(400, "failureCode and failureMessage must be strings")
        try:
            event = sim(request).settle(request.match_info["id"], status, code, message)
        except SimRequestError as exc:
            return _problem(exc.status, str(exc))
        return web.json_response({"payout": event["data"]["object"], "event": event})

    async def resend(request: web.Request) -> web.Response:
        """Send one stored event again now, correctly signed, ignoring the webhook knobs."""
        body = await _json_object(request)
        simulator = sim(request)
        event = simulator.state.events.get(str(body.get("eventId")))
        if event is None:
            return _problem(404, "no such event")
        url = simulator.state.config.webhook_url
        if url is None:
            return _problem(409, "no webhookUrl is configured")
        payload = json.dumps(event, separators=(",", ":")).encode("utf-8")
        delivered = await simulator.webhooks.post(Delivery(event["id"], payload, url))
        return web.json_response({"eventId": event["id"], "delivered": delivered})

    async def reset(request: web.Request) -> web.Response:
        """Forget payouts, events, idempotency keys and counters; the config stays."""
        simulator = sim(request)
        await simulator.background.aclose()  # pending auto-settlements and deliveries belong to the old state
        state = simulator.state
        fresh = type(state)(config=state.config, clock=state.clock, rng=state.rng, stats=state.stats)
        state.stats.clear()
        simulator.state = fresh
        return web.json_response(fresh.counters())

    routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]] = [
        ("GET", "/_sim/config", get_config), ("POST", "/_sim/config", set_config),
        ("GET", "/_sim/stats", stats), ("GET", "/_sim/payouts", payouts), ("GET", "/_sim/events", events),
        ("POST", "/_sim/payouts/{id}/settle", settle), ("POST", "/_sim/webhooks/resend", resend),
        ("POST", "/_sim/reset", reset),
    ]
    for method, path, handler in routes:
        router.add_route(method, path, handler)
