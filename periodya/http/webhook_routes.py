"""Provider webhook intake: verify the signature on the raw bytes, then store the event once.

Nothing is parsed before the signature verifies, and nothing is queued before that either (a refused
delivery's claimed event id is read for its log line only, and counted: handlers/webhook_refusals.py).
A verified event that cannot be read is stored as `unprocessable` and flagged (parse_event). A verified
event is appended to its own stream `provider-event-<id>` with NO_STREAM, so a redelivery (same provider
event id) is answered 200 with no second effect. Acting on the event is the webhooks job's work, not
this handler's, so the provider gets its answer fast.

Group commit (ProviderEventIntake, scheduled by handlers/commit_scheduler.py): verified events that
arrive together share one transaction: ONE lock call on all their provider-event streams, ONE read of
which of those streams already exist, ONE append of the new ones, one projection pass, one commit.
`store_events` is the only code that stores a provider event: an event alone is a batch of one.
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
  conflict), nothing of it was written and every event runs again ALONE, as a batch of one in its own
  transaction: one bad event never fails the others.
* Crash. Before COMMIT nothing is stored and no provider got its 200, so the provider redelivers.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from aiohttp import web

from periodya import metrics
from periodya.config import Settings
from periodya.domain.alerts import WARNING
from periodya.domain.events import ProviderEventReceived
from periodya.errors import BadRequest, PeriodyaError
from periodya.event_registry import REGISTRY
from periodya.eventstore import NO_STREAM, EventStore, StreamAppend
from periodya.eventstore.store import stream_lock
from periodya.handlers import alerts, webhook_refusals
from periodya.handlers.commit_scheduler import GroupCommit
from periodya.handlers.unit_of_work import Meta, project, run_command
from periodya.http import boundary
from periodya.http.client_ip import request_client
from periodya.http.middleware import REQUEST_ID
from periodya.http.route_helpers import json
from periodya.http.schemas import check_tree
from periodya.logging import get_logger
from periodya.projections.provider_events import stream
from periodya.provider.signing import SignatureError, verify
from periodya.provider.stripe_adapter import payout_from_wire

SETTINGS_KEY = web.AppKey("webhook_settings", Settings)
MAX_BATCH = 128
MAX_RUNNING = 2  # as PayoutBatcher: one batch decided in Python while the other's statements run
routes = web.RouteTableDef()
log = get_logger("periodya.webhooks")
Received = tuple[ProviderEventReceived, Meta]

EXISTING = "SELECT stream_id FROM events WHERE stream_id = ANY($1::text[]) AND stream_version = 1"


async def store_events(store: EventStore, batch: list[Received]) -> list[bool]:
    """Store every event of `batch` once, in ONE transaction (see the module docstring); per event, True
    when its id was stored before (a redelivery, or a repeat earlier in the batch) and nothing was added."""
    streams = [stream(event.event_id) for event, _ in batch]
    async with store.pool.acquire() as conn, conn.transaction():
        await store.lock(conn, [stream_lock(s) for s in streams])
        seen = {row["stream_id"] for row in await conn.fetch(EXISTING, streams)}
        outcomes: list[bool] = []
        appends = []
        for (event, meta), sid in zip(batch, streams, strict=True):
            outcomes.append(sid in seen)
            if sid not in seen:
                seen.add(sid)  # a repeat later in this batch is a duplicate too
                appends.append(StreamAppend(sid, NO_STREAM, [REGISTRY.to_new(event, meta.as_metadata())]))
        if appends:
            await project(conn, await store.append(appends, conn=conn))
    if appends:
        store.wake()
    return outcomes


class ProviderEventIntake:
    """Stores verified provider events in batches (see the module docstring). One per app."""

    def __init__(self, store: EventStore, *, max_batch: int = MAX_BATCH, max_running: int = MAX_RUNNING) -> None:
        self.store = store
        self._group: GroupCommit[Received, bool] = GroupCommit(
            self._commit, max_batch=max_batch, max_running=max_running,
            name="provider event", label=lambda r: r[0].event_id)

    async def receive(self, event: ProviderEventReceived, meta: Meta) -> bool:
        """Store `event` once; True when its id was stored before (answer 200 with no second effect)."""
        return await self._group.submit((event, meta))

    async def drain(self) -> None:
        await self._group.drain()

    async def _commit(self, batch: list[Received]) -> list[bool]:
        return await store_events(self.store, batch)


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


UNPROCESSABLE = "unprocessable"
"""The type a signed but unreadable provider event is stored under: the webhooks job marks it applied with
outcome `unprocessable` and acts on nothing; the PROVIDER_EVENT_UNPROCESSABLE alert asks a human."""
UNPROCESSABLE_REMEDY = (
    "The provider sent a correctly signed event this service cannot read (details.problem). It is stored "
    "(stream provider-event-<details.providerEventId>, type unprocessable) and nothing was done with it. Look "
    "the event up at the provider; if it concerns a payout, reconcile it with "
    "POST /api/admin/ops/payouts/<payout id>/force-reconcile, then resolve this alert.")
_MAX_ID = 255
_PEEK_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def parse_event(raw: bytes) -> tuple[ProviderEventReceived, str | None]:
    """The stored event, and None, or why the event is unprocessable (then it is stored with type
    UNPROCESSABLE and nothing else). Only an event without a usable id is refused (400): without an id a
    redelivery cannot be recognised."""
    try:
        body: Any = orjson.loads(raw)
        event_id, event_type = body["id"], body["type"]
        if not (isinstance(event_id, str) and 0 < len(event_id) <= _MAX_ID):
            raise ValueError("id must be a string of 1-255 characters")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"not a provider event: {exc}") from None
    # Text cannot hold NUL and a stream id no newline: escaped, the same way on every delivery (dedupe holds).
    storable = event_id.replace("\x00", "\\u0000").replace("\n", "\\n")
    try:
        if storable != event_id:
            raise ValueError("the event id holds NUL or newline characters")
        return _read(body, event_id, event_type), None
    except Exception as exc:  # whatever is unreadable in a signed event: stored, flagged, never a 500
        problem = f"{type(exc).__name__}: {exc}".replace("\x00", "\\u0000")[:500]
    event_id = storable
    return ProviderEventReceived(event_id=event_id, type=UNPROCESSABLE, provider_payout_id=None, payout_id=None,
                                 status=None), problem


def _read(body: Any, event_id: str, event_type: Any) -> ProviderEventReceived:
    if not isinstance(event_type, str) or not 0 < len(event_type) <= _MAX_ID:
        raise ValueError("type must be a string of 1-255 characters")
    created = body.get("created")
    if created is not None and not (isinstance(created, int) and not isinstance(created, bool)
                                    and 0 <= created < 2**62):
        raise ValueError("created must be a unix timestamp")
    if not event_type.startswith("payout."):
        event = ProviderEventReceived(event_id=event_id, type=event_type, provider_payout_id=None, payout_id=None,
                                      status=None, created=created)
    else:
        p = payout_from_wire(body["data"]["object"])
        if not (p.payout_id is None or isinstance(p.payout_id, str)):
            raise ValueError("metadata.payout_id must be a string")
        if not 0 <= p.amount < 2**62:
            raise ValueError("amount is out of range")
        event = ProviderEventReceived(event_id=event_id, type=event_type, provider_payout_id=p.id,
                                      payout_id=p.payout_id, status=p.status, failure_code=p.failure_code,
                                      failure_message=p.failure_message, created=created, amount=p.amount,
                                      currency=p.currency)
    refusal = check_tree(event.model_dump())
    if refusal:
        raise ValueError(refusal)
    return event


def _peek_id(raw: bytes) -> str | None:
    """For the refusal's log line only: the event id the unverified body claims, if it is a plain one."""
    try:
        event_id = orjson.loads(raw).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return event_id if isinstance(event_id, str) and _PEEK_ID.fullmatch(event_id) else None


@routes.post("/api/webhooks/provider")
async def receive_webhook(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        verify(raw, request.headers.get("Stripe-Signature", ""), secrets(request.app[SETTINGS_KEY]), int(time.time()))
    except SignatureError as exc:  # counted (health, sentinel, /metrics) and logged, never the signature or the secret
        metrics.WEBHOOKS.labels("refused").inc()
        await webhook_refusals.record(request.app[INTAKE].store.pool, exc.reason)
        boundary.refused("webhook_signature", reason=exc.reason, providerEventId=_peek_id(raw),
                         remote=request_client(request))
        raise
    try:
        event, problem = parse_event(raw)
    except PeriodyaError:
        metrics.WEBHOOKS.labels("refused").inc()
        raise
    meta = Meta(actor="provider", request_id=request.get(REQUEST_ID),
                extra={"providerEventId": event.event_id, **({"unprocessable": problem} if problem else {})})
    duplicate = await request.app[INTAKE].receive(event, meta)
    metrics.WEBHOOKS.labels("duplicate" if duplicate else "stored").inc()
    if problem is not None:
        await _flag(request.app[INTAKE].store, event.event_id, problem, meta)
    return json({"received": True, "duplicate": duplicate})


async def _flag(store: EventStore, event_id: str, problem: str, meta: Meta) -> None:
    """Raise PROVIDER_EVENT_UNPROCESSABLE for the event (once while open: a redelivery raises nothing)."""
    log.warning("provider_event_unprocessable", providerEventId=event_id, problem=problem)
    details = {"providerEventId": event_id, "problem": problem}
    await run_command(store, meta, lambda u: alerts.raise_alert(
        u, "PROVIDER_EVENT_UNPROCESSABLE", WARNING, event_id, details, UNPROCESSABLE_REMEDY))
