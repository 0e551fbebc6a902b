"""Provider webhook intake: verify the signature on the raw bytes, then store the event once.

Nothing is parsed before the signature verifies. A verified event is appended to its own stream
`provider-event-<id>` with NO_STREAM, so a redelivery (same provider event id) is a version conflict:
answered 200 with no second effect. Acting on the event is the webhooks job's work, not this
handler's, so the provider gets its answer fast.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from periodya.config import Settings
from periodya.domain.decision import Decision
from periodya.domain.events import ProviderEventReceived
from periodya.errors import ConcurrencyConflict
from periodya.handlers.unit_of_work import Meta, UnitOfWork, run_command
from periodya.http.middleware import REQUEST_ID
from periodya.http.platform_routes import STORE, json
from periodya.http.problems import BadRequest
from periodya.projections.provider_events import stream
from periodya.provider.signing import verify
from periodya.provider.stripe_adapter import payout_from_wire

SETTINGS_KEY = web.AppKey("webhook_settings", Settings)
routes = web.RouteTableDef()


def secrets(settings: Settings) -> list[str]:
    """The current secret and, during rotation, previous ones: PERIODYA_WEBHOOK_SECRET may list several,
    comma-separated (a v1 made with any of them is accepted)."""
    return [s.strip() for s in (settings.webhook_secret or "").split(",") if s.strip()]


def parse_event(raw: bytes) -> ProviderEventReceived:
    try:
        body: Any = orjson.loads(raw)
        event_id, event_type, obj = body["id"], body["type"], body["data"]["object"]
        if not (isinstance(event_id, str) and isinstance(event_type, str) and 0 < len(event_id) <= 255):
            raise ValueError("id and type must be strings")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"not a provider event: {exc}") from None
    if not event_type.startswith("payout."):
        return ProviderEventReceived(event_id=event_id, type=event_type, provider_payout_id=None, payout_id=None,
                                     status=None, created=body.get("created"))
    try:
        p = payout_from_wire(obj)
    except Exception as exc:  # the adapter raises its typed error; anything unreadable is a bad request here
        raise BadRequest(f"the event's payout object is unreadable: {exc}") from None
    created = body.get("created")
    return ProviderEventReceived(event_id=event_id, type=event_type, provider_payout_id=p.id, payout_id=p.payout_id,
                                 status=p.status, failure_code=p.failure_code, failure_message=p.failure_message,
                                 created=created if isinstance(created, int) else None, amount=p.amount,
                                 currency=p.currency)


@routes.post("/api/webhooks/provider")
async def receive_webhook(request: web.Request) -> web.Response:
    raw = await request.read()
    verify(raw, request.headers.get("Stripe-Signature", ""), secrets(request.app[SETTINGS_KEY]), int(time.time()))
    event = parse_event(raw)
    meta = Meta(actor="provider", request_id=request.get(REQUEST_ID), extra={"providerEventId": event.event_id})

    async def store_once(uow: UnitOfWork) -> None:
        await uow.commit(stream(event.event_id), 0, Decision((event,)))

    try:
        await run_command(request.app[STORE], meta, store_once, attempts=1)
    except ConcurrencyConflict:
        return json({"received": True, "duplicate": True})
    return json({"received": True, "duplicate": False})
