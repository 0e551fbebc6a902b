"""Projections: views built from events. Each module has one `apply(conn, events)` taking a batch in
commit-safe order; the same function runs inline in the appending transaction and in replay."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from periodya.eventstore.model import RecordedEvent
from periodya.projections import alerts, balances, escrows, ledger, outbox, payouts, provider_events
from periodya.projections.port import Projection, ProjectionConnection

__all__ = ["PROJECTIONS", "Projection", "ProjectionConnection", "apply_all"]

PROJECTIONS: dict[str, Projection] = {
    "ledger": ledger,
    "balances": balances,
    "escrows": escrows,
    "payouts": payouts,
    "outbox": outbox,
    "provider_events": provider_events,
    "alerts": alerts,
}


async def apply_all(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
    for projection in PROJECTIONS.values():
        await projection.apply(conn, events)
