"""Provider webhook intake: verify the signature on the raw bytes, then store the event once.

Nothing is parsed before the signature verifies, and nothing is queued before that either. A verified
event is appended to its own stream `provider-event-<id>` with NO_STREAM, so a redelivery (same provider
event id) is answered 200 with no second effect. Acting on the event is the webhooks job's work, not
this handler's, so the provider gets its answer fast.

Group commit (ProviderEventIntake, scheduled by handlers/group_commit.py): verified events that arrive
together share one transaction: ONE lock call on all their provider-event streams, ONE read of which of
those streams already exist, ONE append of the new ones, one projection pass, one commit.
Why it is safe:
* Dedupe. The streams are locked before the read, so the read (a fresh READ COMMITTED snapshot after
  the lock) sees every earlier writer of those streams; an event id that exists already, or that came
  earlier in the same batch, is answered `duplicate: true` and appended nothing. The append's NO_STREAM
  expectation stays the backstop: a clash fails the batch instead of storing an event twice.
* Locks. A batch locks only provider-event streams, in one sorted call, and holds nothing else while it
  waits, so batches cannot deadlock each other. The webhooks runner, the only other holder of several
  of them, takes them with try-locks (it never waits for one), so it cannot close a cycle either: the
  intake may wait for a run that holds a redelivered event's stream, never the other way round.
* All or nothing. A batch is one transaction; if it fails (a bad event the database refuses, a
  conflict), nothing of it was written and every event runs again ALONE through the single path
  (`store_alone`, as before group commit): one bad event never fails the others.
* Crash. Before COMMIT nothing is stored and no provider got its 200, so the provider redelivers.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from periodya import metrics
from periodya.catalog import REGISTRY
from periodya.config import Settings
from periodya.domain.decision import Decision
from periodya.domain.events import ProviderEventReceived
from periodya.errors import ConcurrencyConflict, PeriodyaError
from periodya.eventstore import NO_STREAM, EventStore, StreamAppend
from periodya.eventstore.store import stream_lock
from periodya.handlers.group_commit import GroupCommit
from periodya.handlers.unit_of_work import Meta, UnitOfWork, project, run_command
from periodya.http.middleware import REQUEST_ID
from periodya.http.platform_routes import json
from periodya.http.problems import BadRequest
from periodya.projections.provider_events import stream
from periodya.provider.signing import verify
from periodya.provider.stripe_adapter import payout_from_wire

SETTINGS_KEY = web.AppKey("webhook_settings", Settings)
MAX_BATCH = 128
MAX_RUNNING = 2  # as PayoutBatcher: one batch decided in Python while the other's statements run
routes = web.RouteTableDef()
Received = tuple[ProviderEventReceived, Meta]

EXISTING = "SELECT stream_id FROM events WHERE stream_id = ANY($1::text[]) AND stream_version = 1"


async def store_alone(store: EventStore, event: ProviderEventReceived, meta: Meta) -> bool:
    """Store one provider event in its own transaction; True when it was stored before (a redelivery)."""

    async def store_once(uow: UnitOfWork) -> None:
        await uow.commit(stream(event.event_id), 0, Decision((event,)))

    try:
        await run_command(store, meta, store_once, attempts=1)
    except ConcurrencyConflict:
        return True
    return False


class ProviderEventIntake:
    """Stores verified provider events in batches (see the module docstring). One per app."""

    def __init__(self, store: EventStore, *, max_batch: int = MAX_BATCH, max_running: int = MAX_RUNNING) -> None:
        self.store = store
        self._group: GroupCommit[Received, bool] = GroupCommit(
            self._commit, lambda r: store_alone(store, *r), max_batch=max_batch, max_running=max_running,
            name="provider event", label=lambda r: r[0].event_id)

    async def receive(self, event: ProviderEventReceived, meta: Meta) -> bool:
        """Store `event` once; True when its id was stored before (answer 200 with no second effect)."""
        return await self._group.submit((event, meta))

    async def drain(self) -> None:
        await self._group.drain()

    async def _commit(self, batch: list[Received]) -> list[bool | BaseException]:
        streams = [stream(event.event_id) for event, _ in batch]
        async with self.store.pool.acquire() as conn, conn.transaction():
            await self.store.lock(conn, [stream_lock(s) for s in streams])
            seen = {row["stream_id"] for row in await conn.fetch(EXISTING, streams)}
            outcomes: list[bool | BaseException] = []
            appends = []
            for (event, meta), sid in zip(batch, streams, strict=True):
                outcomes.append(sid in seen)
                if sid not in seen:
                    seen.add(sid)  # a repeat later in this batch is a duplicate too
                    appends.append(StreamAppend(sid, NO_STREAM, [REGISTRY.to_new(event, meta.as_metadata())]))
            if appends:
                await project(conn, await self.store.append(appends, conn=conn))
        if appends:
            self.store.wake()
        return outcomes


INTAKE = web.AppKey("webhook_intake", ProviderEventIntake)


def setup(app: web.Application, store: EventStore) -> None:
    """Give `app` its webhook intake (drained on shutdown) and the webhook route."""
    app[INTAKE] = intake = ProviderEventIntake(store)

    async def _drain(_app: web.Application) -> None:
        await intake.drain()

    app.on_shutdown.append(_drain)
    app.add_routes(routes)


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
    try:
        verify(raw, request.headers.get("Stripe-Signature", ""), secrets(request.app[SETTINGS_KEY]), int(time.time()))
        event = parse_event(raw)
    except PeriodyaError:
        metrics.WEBHOOKS.labels("refused").inc()
        raise
    meta = Meta(actor="provider", request_id=request.get(REQUEST_ID), extra={"providerEventId": event.event_id})
    duplicate = await request.app[INTAKE].receive(event, meta)
    metrics.WEBHOOKS.labels("duplicate" if duplicate else "stored").inc()
    return json({"received": True, "duplicate": duplicate})
