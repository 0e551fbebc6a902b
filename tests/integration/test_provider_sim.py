"""The Stripe-protocol adapter against the provider simulator, both real, over real HTTP on localhost."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web

from periodya.provider import (
    ProviderAuthFailed,
    ProviderIdempotencyMismatch,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    StripePayoutsClient,
)
from periodya.provider.signing import SignatureError, verify
from periodya.provider.simulator import running_simulator

API_KEY = "sk_test_periodya"
SECRET = "whsec_periodya_test"


async def sim_call(url: str, method: str, path: str, body: dict[str, Any] | None = None,
                   expect: int = 200) -> Any:
    async with aiohttp.ClientSession() as session, session.request(method, url + path, json=body) as response:
        assert response.status == expect, await response.text()
        return await response.json()


async def configure(url: str, **knobs: Any) -> dict[str, Any]:
    result: dict[str, Any] = await sim_call(url, "POST", "/_sim/config", knobs)
    return result


async def stats(url: str) -> dict[str, int]:
    result: dict[str, int] = await sim_call(url, "GET", "/_sim/stats")
    return result


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@dataclass
class Receiver:
    url: str
    received: list[tuple[str, bytes]] = field(default_factory=list)

    async def count(self, n: int, within: float = 5.0) -> list[tuple[str, bytes]]:
        async def enough() -> bool:
            return len(self.received) >= n

        await wait_until(enough, within)
        return self.received


@pytest.fixture
async def sim() -> AsyncIterator[str]:
    async with running_simulator(API_KEY, SECRET, seed=1234) as url:
        yield url


@pytest.fixture
async def client(sim: str) -> AsyncIterator[StripePayoutsClient]:
    async with StripePayoutsClient(sim, API_KEY, timeout=5) as c:
        yield c


@pytest.fixture
async def receiver(sim: str) -> AsyncIterator[Receiver]:
    """A tiny webhook endpoint; the simulator is pointed at it."""
    app = web.Application()
    runner = web.AppRunner(app, access_log=None)
    holder: list[Receiver] = []

    async def hook(request: web.Request) -> web.Response:
        holder[0].received.append((request.headers.get("Stripe-Signature", ""), await request.read()))
        return web.Response(status=200)

    app.router.add_post("/hook", hook)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    holder.append(Receiver(f"http://127.0.0.1:{runner.addresses[0][1]}/hook"))
    await configure(sim, webhookUrl=holder[0].url)
    yield holder[0]
    await runner.cleanup()


async def test_create_retrieve_and_list_pages_newest_first(sim: str, client: StripePayoutsClient) -> None:
    created = [await client.create_payout(f"pay_{i}", 1000 + i, "EUR", "ba_123") for i in range(3)]
    first = created[0]
    assert first.id.startswith("po_") and first.status == "pending"
    assert (first.amount, first.currency, first.destination, first.payout_id) == (1000, "EUR", "ba_123", "pay_0")
    assert await client.retrieve_payout(first.id) == first
    page, has_more = await client.list_payouts(limit=2)
    assert [p.payout_id for p in page] == ["pay_2", "pay_1"] and has_more
    rest, has_more = await client.list_payouts(limit=2, starting_after=page[-1].id)
    assert [p.payout_id for p in rest] == ["pay_0"] and not has_more
    held = (await sim_call(sim, "GET", "/_sim/payouts"))["data"]
    assert {(p["metadata"]["payout_id"], p["currency"]) for p in held} == {(f"pay_{i}", "eur") for i in range(3)}


async def test_same_payout_id_twice_is_one_provider_payout(sim: str, client: StripePayoutsClient) -> None:
    one = await client.create_payout("pay_once", 500, "USD", "ba_1")
    again = await client.create_payout("pay_once", 500, "USD", "ba_1")
    assert again == one
    counters = await stats(sim)
    assert (counters["payoutsCreated"], counters["idempotentReplays"]) == (1, 1)
    with pytest.raises(ProviderIdempotencyMismatch):
        await client.create_payout("pay_once", 501, "USD", "ba_1")
    assert (await stats(sim))["payoutsCreated"] == 1


async def test_error_rate_is_unavailable_and_creates_nothing(sim: str, client: StripePayoutsClient) -> None:
    await configure(sim, errorRate=1)
    with pytest.raises(ProviderUnavailable):
        await client.create_payout("pay_err", 700, "EUR", "ba_1")
    with pytest.raises(ProviderUnavailable):
        await client.list_payouts()
    counters = await stats(sim)
    assert counters["payoutsCreated"] == 0 and counters["errorsInjected"] == 2
    assert (await sim_call(sim, "GET", "/_sim/payouts"))["data"] == []


async def test_drop_after_create_then_find_and_retry_same_key(sim: str, client: StripePayoutsClient) -> None:
    await configure(sim, dropAfterCreateRate=1)
    with pytest.raises(ProviderUnavailable, match="ServerDisconnected"):
        await client.create_payout("pay_drop", 900, "EUR", "ba_9")
    found = await client.find_by_payout_id("pay_drop")
    assert found is not None and found.amount == 900 and found.payout_id == "pay_drop"
    retried = await client.create_payout("pay_drop", 900, "EUR", "ba_9")  # replays answer even with the knob on
    assert retried.id == found.id
    counters = await stats(sim)
    assert (counters["payoutsCreated"], counters["dropsAfterCreate"], counters["idempotentReplays"]) == (1, 1, 1)
    assert await client.find_by_payout_id("pay_never") is None


async def test_timeout_is_unavailable_and_the_payout_may_still_appear(sim: str) -> None:
    await configure(sim, latencyMs=400)
    async with StripePayoutsClient(sim, API_KEY, timeout=0.1) as hasty:
        with pytest.raises(ProviderUnavailable):
            await hasty.create_payout("pay_slow", 100, "EUR", "ba_1")

    async def created() -> bool:
        return (await stats(sim))["payoutsCreated"] == 1

    await wait_until(created)
    await configure(sim, latencyMs=0)
    async with StripePayoutsClient(sim, API_KEY) as patient:
        found = await patient.find_by_payout_id("pay_slow")
    assert found is not None and found.amount == 100


async def test_bad_api_key_and_nothing_created(sim: str) -> None:
    async with StripePayoutsClient(sim, "sk_test_wrong") as wrong:
        with pytest.raises(ProviderAuthFailed):
            await wrong.create_payout("pay_auth", 100, "EUR", "ba_1")
        with pytest.raises(ProviderAuthFailed):
            await wrong.retrieve_payout("po_x")
    assert (await stats(sim))["payoutsCreated"] == 0
    async with aiohttp.ClientSession() as session, session.get(sim + "/v1/payouts") as response:
        assert response.status == 401 and (await response.json())["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("amount", "currency", "destination", "code", "param"), [
    (0, "EUR", "ba_1", "amount_too_small", "amount"),
    (-5, "EUR", "ba_1", "parameter_invalid_integer", "amount"),
    (100, "EURO", "ba_1", "parameter_invalid", "currency"),
    (100, "EUR", "", "parameter_missing", "destination"),
])
async def test_validation_errors_are_rejections(client: StripePayoutsClient, amount: int, currency: str,
                                                destination: str, code: str, param: str) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await client.create_payout("pay_bad", amount, currency, destination)
    assert (caught.value.status, caught.value.provider_code, caught.value.param) == (400, code, param)


async def test_unknown_payout_and_unreachable_provider(client: StripePayoutsClient) -> None:
    with pytest.raises(ProviderNotFound):
        await client.retrieve_payout("po_missing")
    async with StripePayoutsClient("http://127.0.0.1:9", API_KEY, timeout=2) as nowhere:
        with pytest.raises(ProviderUnavailable):
            await nowhere.create_payout("pay_x", 1, "EUR", "ba_1")


async def test_manual_settle_sends_a_verifiable_webhook(sim: str, client: StripePayoutsClient,
                                                        receiver: Receiver) -> None:
    payout = await client.create_payout("pay_hook", 1200, "GBP", "ba_7")
    await sim_call(sim, "POST", f"/_sim/payouts/{payout.id}/settle", {"status": "paid"})
    [(header, body)] = await receiver.count(1)
    verify(body, header, [SECRET], int(time.time()))
    stripe.WebhookSignature.verify_header(body, header, SECRET, tolerance=300)
    event = json.loads(body)
    assert event["id"].startswith("evt_") and event["object"] == "event" and event["type"] == "payout.paid"
    obj = event["data"]["object"]
    assert (obj["id"], obj["status"], obj["amount"], obj["metadata"]["payout_id"]) == (payout.id, "paid", 1200,
                                                                                       "pay_hook")
    assert (await client.retrieve_payout(payout.id)).status == "paid"
    assert (await stats(sim))["webhooksSent"] == 1


async def test_failed_settlement_carries_the_failure(sim: str, client: StripePayoutsClient,
                                                     receiver: Receiver) -> None:
    payout = await client.create_payout("pay_fail", 300, "EUR", "ba_2")
    await sim_call(sim, "POST", f"/_sim/payouts/{payout.id}/settle", {"status": "failed"})
    [(_, body)] = await receiver.count(1)
    assert json.loads(body)["type"] == "payout.failed"
    now = await client.retrieve_payout(payout.id)
    assert (now.status, now.failure_code) == ("failed", "account_closed")
    await sim_call(sim, "POST", f"/_sim/payouts/{payout.id}/settle", {"status": "paid"}, expect=400)


async def test_duplicate_webhooks_share_the_event_id(sim: str, client: StripePayoutsClient,
                                                     receiver: Receiver) -> None:
    await configure(sim, webhookDuplicateRate=1)
    payout = await client.create_payout("pay_dup", 100, "EUR", "ba_1")
    await sim_call(sim, "POST", f"/_sim/payouts/{payout.id}/settle", {"status": "paid"})
    received = await receiver.count(2)
    assert len({json.loads(body)["id"] for _, body in received}) == 1
    for header, body in received:
        verify(body, header, [SECRET], int(time.time()))
    counters = await stats(sim)
    assert (counters["webhooksSent"], counters["duplicatesSent"]) == (2, 1)


async def test_dropped_webhooks_are_counted_not_sent(sim: str, client: StripePayoutsClient,
                                                     receiver: Receiver) -> None:
    await configure(sim, webhookDropRate=1)
    payout = await client.create_payout("pay_lost", 100, "EUR", "ba_1")
    await sim_call(sim, "POST", f"/_sim/payouts/{payout.id}/settle", {"status": "paid"})

    async def dropped() -> bool:
        return (await stats(sim))["webhooksDropped"] == 1

    await wait_until(dropped)  # the simulator decided: this event is not sent
    assert receiver.received == []
    counters = await stats(sim)
    assert (counters["webhooksDropped"], counters["webhooksSent"]) == (1, 0)
    [event] = (await sim_call(sim, "GET", "/_sim/events"))["data"]
    resent = await sim_call(sim, "POST", "/_sim/webhooks/resend", {"eventId": event["id"]})
    assert resent["delivered"] is True
    [(header, body)] = await receiver.count(1)
    verify(body, header, [SECRET], int(time.time()))
    assert json.loads(body)["id"] == event["id"]


async def test_bad_signature_is_refused_by_verify(sim: str, client: StripePayoutsClient,
                                                  receiver: Receiver) -> None:
    await configure(sim, badSignatureRate=1)
    payout = await client.create_payout("pay_forged", 100, "EUR", "ba_1")
    await sim_call(sim, "POST", f"/_sim/payouts/{payout.id}/settle", {"status": "paid"})
    [(header, body)] = await receiver.count(1)
    with pytest.raises(SignatureError) as caught:
        verify(body, header, [SECRET], int(time.time()))
    assert caught.value.reason == "no_matching_signature"
    assert (await stats(sim))["badSignaturesSent"] == 1


@pytest.mark.parametrize(("paid_ratio", "status", "event_type"), [(1, "paid", "payout.paid"),
                                                                   (0, "failed", "payout.failed")])
async def test_auto_settle(sim: str, client: StripePayoutsClient, receiver: Receiver, paid_ratio: float,
                           status: str, event_type: str) -> None:
    await configure(sim, autoSettle=True, settleDelayMs=0, paidRatio=paid_ratio)
    payout = await client.create_payout("pay_auto", 100, "EUR", "ba_1")

    async def settled() -> bool:
        return (await client.retrieve_payout(payout.id)).status == status

    await wait_until(settled)
    [(_, body)] = await receiver.count(1)
    assert json.loads(body)["type"] == event_type


async def test_config_is_validated_and_returned_whole(sim: str) -> None:
    full = await configure(sim, errorRate=0.25, webhookDelayMs=10)
    assert full["errorRate"] == 0.25 and full["webhookDelayMs"] == 10 and "badSignatureRate" in full
    for bad in ({"errorRate": 2}, {"noSuchKnob": 1}, {"autoSettle": "yes"}, {"webhookUrl": "ftp://x"}):
        await sim_call(sim, "POST", "/_sim/config", bad, expect=400)
    assert (await sim_call(sim, "GET", "/_sim/config"))["errorRate"] == 0.25


async def test_the_same_seed_gives_the_same_faults() -> None:
    async def outcomes(seed: int) -> list[bool]:
        async with running_simulator(API_KEY, SECRET, seed=seed, config={"errorRate": 0.5}) as url, \
                StripePayoutsClient(url, API_KEY) as c:
            results = []
            for i in range(20):
                try:
                    await c.create_payout(f"pay_{i}", 100, "EUR", "ba_1")
                    results.append(True)
                except ProviderUnavailable:
                    results.append(False)
            return results

    first = await outcomes(99)
    assert first == await outcomes(99) and True in first and False in first


async def test_thousands_of_payouts_page_completely(sim: str, client: StripePayoutsClient) -> None:
    n = 2000
    for chunk in range(0, n, 200):
        await asyncio.gather(*(client.create_payout(f"bulk_{i}", 1 + i, "EUR", "ba_1")
                               for i in range(chunk, chunk + 200)))
    seen: list[str] = []
    after: str | None = None
    while True:
        page, more = await client.list_payouts(100, after)
        seen += [p.payout_id or "" for p in page]
        if not more:
            break
        after = page[-1].id
    assert sorted(seen) == sorted(f"bulk_{i}" for i in range(n))
    oldest_created = await client.find_by_payout_id(seen[-1])
    assert oldest_created is not None and oldest_created.payout_id == seen[-1]


async def test_reset_forgets_payouts_keys_and_counters(sim: str, client: StripePayoutsClient) -> None:
    await configure(sim, latencyMs=1)
    first = await client.create_payout("pay_reset", 100, "EUR", "ba_1")
    counters = await sim_call(sim, "POST", "/_sim/reset")
    assert counters["payoutsCreated"] == 0
    assert (await sim_call(sim, "GET", "/_sim/payouts"))["data"] == []
    assert (await sim_call(sim, "GET", "/_sim/config"))["latencyMs"] == 1
    second = await client.create_payout("pay_reset", 100, "EUR", "ba_1")
    assert second.id != first.id and (await stats(sim))["payoutsCreated"] == 1
