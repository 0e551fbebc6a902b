"""The simulator's webhook sender and its background tasks.

Deliveries run as tracked background tasks so an API handler never waits on the receiver. There is
no retry: dropped and failed deliveries are what the ledger's reconcile-pull has to cope with.
`Background.aclose()` cancels whatever is still pending on shutdown.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from periodya.logging import get_logger
from periodya.provider.signing import sign
from periodya.provider.sim_state import Delivery

log = get_logger("periodya.provider.sim")


class Background:
    """A set of fire-and-forget tasks that are still owned: kept referenced, cancelled on close."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sim_background_task_failed", error=repr(task.exception()))

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class WebhookSender:
    """POSTs signed events. `stats` is the simulator's shared counter."""

    def __init__(self, secret: str, stats: Counter[str], background: Background,
                 clock: Callable[[], float] = time.time, timeout: float = 10.0) -> None:
        self._secret = secret
        self._stats = stats
        self._background = background
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def schedule(self, delivery: Delivery) -> None:
        """Act on a planned delivery without waiting for it."""
        if delivery.drop:
            self._stats["webhooksDropped"] += 1
            log.debug("sim_webhook_dropped", event_id=delivery.event_id)
            return
        if delivery.url is None:
            self._stats["webhooksSkipped"] += 1
            return
        self._background.spawn(self._deliver(delivery))

    async def _deliver(self, delivery: Delivery) -> None:
        if delivery.delay_s > 0:
            await asyncio.sleep(delivery.delay_s)
        await self.post(delivery)
        if delivery.duplicate:
            self._stats["duplicatesSent"] += 1
            await self.post(delivery)

    async def post(self, delivery: Delivery) -> bool:
        """Send once; True when the receiver answered 2xx. Failures are counted and logged, never raised."""
        if delivery.url is None:
            return False
        secret = self._secret
        if delivery.bad_signature:
            secret = self._secret + "-not-the-real-secret"
            self._stats["badSignaturesSent"] += 1
        headers = {"Content-Type": "application/json",
                   "Stripe-Signature": sign(delivery.body, secret, int(self._clock()))}
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._stats["webhooksSent"] += 1
        try:
            async with self._session.post(delivery.url, data=delivery.body, headers=headers,
                                          timeout=self._timeout) as response:
                await response.read()
                ok = 200 <= response.status < 300
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("sim_webhook_failed", event_id=delivery.event_id, error=type(exc).__name__)
            ok = False
        else:
            if not ok:
                log.info("sim_webhook_refused", event_id=delivery.event_id, status=response.status)
        if not ok:
            self._stats["webhooksFailed"] += 1
        return ok
