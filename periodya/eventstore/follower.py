"""A follower of the whole log: LISTEN/NOTIFY wake-ups with a polling fallback.

NOTIFY is only a hint (it can be lost when a connection drops), so the follower also polls every
`poll_interval` seconds. It reads in commit-safe order from its position, so a wake-up that arrives
before the writer's transaction falls below the snapshot horizon is harmless: the next poll gets it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg

from periodya.eventstore.model import START, Position, RecordedEvent
from periodya.eventstore.store import NOTIFY_CHANNEL, EventStore


class Follower:
    def __init__(self, store: EventStore, after: Position = START, *, page: int = 500,
                 poll_interval: float = 1.0) -> None:
        self.store = store
        self.position = after
        self.page = page
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._listen_conn: asyncpg.Connection | None = None

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._listen_conn = await self.store.pool.acquire()
        await self._listen_conn.add_listener(NOTIFY_CHANNEL, self._on_notify)

    async def stop(self) -> None:
        if self._listen_conn is not None:
            try:
                await self._listen_conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            finally:
                await self.store.pool.release(self._listen_conn)
                self._listen_conn = None

    async def batches(self) -> AsyncIterator[list[RecordedEvent]]:
        """Yield non-empty pages forever; waits for a wake-up or the poll interval when caught up."""
        while True:
            self._wake.clear()
            events = await self.store.read_all(self.position, self.page)
            if events:
                self.position = events[-1].position
                yield events
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
