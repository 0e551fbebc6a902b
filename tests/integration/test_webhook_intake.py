"""Group commit of the provider webhook intake (periodya/http/webhook_routes.py), against a real database.

The intake is driven directly so that batch boundaries are known: with `max_running=1`, the first
event runs alone and every event queued meanwhile shares the next transaction (checked through the
events' transaction ids). What must hold: each provider event id is stored once (a duplicate inside a
batch and a redelivery in a later batch are answered `duplicate` with no second effect), and a batch
that fails reruns its events one by one, so that one bad event never fails the others. The HTTP tests
check that the signature is verified per request, before anything is queued.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from periodya.domain.events import ProviderEventReceived
from periodya.eventstore import EventStore
from periodya.handlers.unit_of_work import Meta
from periodya.http.app import create_app
from periodya.http.webhook_routes import ProviderEventIntake
from periodya.provider.signing import sign
from tests.clients import Client

SECRET = "whsec_intake_test"


def event(event_id: str, status: str = "paid") -> ProviderEventReceived:
    return ProviderEventReceived(event_id=event_id, type=f"payout.{status}", provider_payout_id=f"po_{event_id}",
                                 payout_id=f"pay_{event_id}", status=status)


def meta(n: int) -> Meta:
    return Meta(actor="provider", request_id=f"req-{n}")


async def submit(intake: ProviderEventIntake, events: list[ProviderEventReceived]) -> list[Any]:
    """Queue every event before any of them runs (the first one starts at once, alone)."""
    return await asyncio.wait_for(asyncio.gather(
        *(intake.receive(e, meta(n)) for n, e in enumerate(events)), return_exceptions=True), timeout=60)


async def stored(pool: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    """Per provider event id: (events in its stream, provider_events rows)."""
    rows = await pool.fetch(
        "SELECT substr(e.stream_id, 16) AS id, count(*) AS events, "
        "(SELECT count(*) FROM provider_events p WHERE p.event_id = substr(e.stream_id, 16)) AS rows "
        "FROM events e WHERE e.stream_id LIKE 'provider-event-%' GROUP BY e.stream_id")
    return {r["id"]: (r["events"], r["rows"]) for r in rows}


async def transactions(pool: asyncpg.Pool, ids: list[str]) -> int:
    return int(await pool.fetchval("SELECT count(DISTINCT tx) FROM events WHERE stream_id = ANY($1::text[])",
                                   [f"provider-event-{i}" for i in ids]))


async def test_a_batch_with_a_duplicate_event_id_stores_it_once(store: EventStore, pool: asyncpg.Pool) -> None:
    intake = ProviderEventIntake(store, max_running=1)
    answers = await submit(intake, [event("warm"), event("e1"), event("e2"), event("e1"), event("e3"),
                                    event("e2", "failed")])
    assert answers == [False, False, False, True, False, True]
    assert await stored(pool) == {i: (1, 1) for i in ("warm", "e1", "e2", "e3")}
    assert await transactions(pool, ["e1", "e2", "e3"]) == 1  # one batch, one transaction
    # the first delivery won: the duplicate's different content was not stored
    assert await pool.fetchval("SELECT status FROM provider_events WHERE event_id = 'e2'") == "paid"
    meta_e1 = await pool.fetchval("SELECT metadata->>'requestId' FROM events WHERE stream_id = 'provider-event-e1'")
    assert meta_e1 == "req-1"  # each event keeps its own request's metadata


async def test_a_redelivery_across_batches_is_a_no_op(store: EventStore, pool: asyncpg.Pool) -> None:
    intake = ProviderEventIntake(store, max_running=1)
    assert await submit(intake, [event("warm"), event("r1"), event("r2")]) == [False, False, False]
    before = await pool.fetch("SELECT * FROM provider_events ORDER BY event_id")
    seq = await pool.fetchval("SELECT max(seq) FROM events")
    # again in one batch behind a warm-up (r1, r2 redelivered beside a new r3), then alone
    assert await submit(intake, [event("warm2"), event("r1"), event("r3"), event("r2", "failed")]) == [
        False, True, False, True]
    assert await intake.receive(event("r1"), meta(9)) is True
    assert await stored(pool) == {i: (1, 1) for i in ("warm", "r1", "r2", "warm2", "r3")}
    after = {r["event_id"]: r for r in await pool.fetch("SELECT * FROM provider_events ORDER BY event_id")}
    assert all(after[r["event_id"]] == r for r in before)  # untouched
    new = await pool.fetch("SELECT stream_id FROM events WHERE seq > $1 ORDER BY seq", seq)
    assert [r["stream_id"] for r in new] == ["provider-event-warm2", "provider-event-r3"]


async def test_a_bad_event_in_a_batch_does_not_fail_the_others(store: EventStore, pool: asyncpg.Pool) -> None:
    # a newline in the id passes parsing but the event log refuses it as a stream id (CHECK constraint):
    # the batch fails as a whole and each event reruns alone
    intake = ProviderEventIntake(store, max_running=1)
    answers = await submit(intake, [event("warm"), event("g1"), event("bad\nid"), event("g2"), event("g1")])
    assert answers[:2] == [False, False] and answers[3:] == [False, True]
    assert isinstance(answers[2], asyncpg.CheckViolationError)
    assert await stored(pool) == {i: (1, 1) for i in ("warm", "g1", "g2")}
    assert await transactions(pool, ["g1", "g2"]) == 2  # stored one by one, after the batch failed


def test_limits_must_be_positive(store: EventStore) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ProviderEventIntake(store, max_batch=0)


# --- over HTTP: the signature is verified per request, before anything is queued --------------------

def wire(event_id: str) -> bytes:
    return orjson.dumps({"id": event_id, "type": "payout.paid", "created": int(time.time()), "data": {"object": {
        "id": f"po_{event_id}", "object": "payout", "amount": 100, "currency": "usd", "status": "paid",
        "metadata": {"payoutId": f"pay_{event_id}"}}}})


@pytest.fixture
async def client(settings, pool: asyncpg.Pool):  # type: ignore[no-untyped-def]
    server = TestServer(create_app(settings.with_overrides(webhook_secret=SECRET), pool))
    client = TestClient(server)
    await client.start_server()
    yield client
    await client.close()


async def post(client: Client, body: bytes, secret: str = SECRET) -> tuple[int, Any]:
    header = sign(body, secret, int(time.time()))
    async with client.post("/api/webhooks/provider", data=body, headers={"Stripe-Signature": header}) as r:
        return r.status, await r.json()


async def test_concurrent_deliveries_store_each_event_once(client: Client, pool: asyncpg.Pool) -> None:
    ids = [f"h{i}" for i in range(20)]
    bodies = [wire(i) for i in ids] + [wire(i) for i in ids[::4]]  # five ids delivered twice
    answers = await asyncio.gather(*(post(client, b) for b in bodies))
    assert {status for status, _ in answers} == {200}
    firsts = [body["duplicate"] for _, body in answers].count(False)
    assert firsts == len(ids)  # exactly one delivery per id stored it; the others answered duplicate
    assert await stored(pool) == {i: (1, 1) for i in ids}


async def test_a_bad_signature_is_refused_before_anything_is_stored(client: Client, pool: asyncpg.Pool) -> None:
    good, forged = wire("s1"), wire("s2")
    answers = await asyncio.gather(post(client, good), post(client, forged, secret="whsec_wrong"))
    assert answers[0] == (200, {"received": True, "duplicate": False})
    assert 400 <= answers[1][0] < 500
    assert await stored(pool) == {"s1": (1, 1)}
