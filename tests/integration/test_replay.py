"""Replay rebuilds every projection with the live apply functions; a changed live row is named exactly."""

from __future__ import annotations

import asyncpg
import pytest

from periodya.audit.replay import replay_and_diff
from periodya.domain.events import ProviderEventApplied, ProviderEventReceived
from periodya.event_registry import REGISTRY
from periodya.eventstore import NO_STREAM, EventStore, StreamAppend
from periodya.projections import apply_all, provider_events, rows
from tests.integration.test_ledger_properties import _run

PROGRAM = [("fund", 0, 5000, "USD"), ("release", 0, 0, 3000, 100), ("request", 0, 1000, "USD"), ("paid", 0),
           ("request", 0, 500, "USD"), ("failed", 1), ("request", 0, 700, "USD"), ("quarantine_cancel", 2),
           ("failed", 0)]


async def test_replay_is_clean_then_names_the_altered_row(pool: asyncpg.Pool) -> None:
    await _run(EventStore(pool), "x-", PROGRAM)
    assert all(d.clean for d in await replay_and_diff(pool, "replay_t"))

    await pool.execute("UPDATE balances SET balance = balance + 1, credits = credits + 1 "
                       "WHERE account = 'payable:x-p0'")
    await pool.execute("UPDATE payouts SET status = 'PAID' WHERE payout_id = 'x-po1'")
    dirty = {d.table: d for d in await replay_and_diff(pool, "replay_t") if not d.clean}
    assert set(dirty) == {"balances", "payouts"}
    [(key, live, replayed)] = dirty["balances"].changed
    assert key == {"account": "payable:x-p0", "currency": "USD"}
    assert live == {"balance": replayed["balance"] + 1, "credits": replayed["credits"] + 1}
    [(key, live, replayed)] = dirty["payouts"].changed
    assert (key, live, replayed) == ({"payout_id": "x-po1"}, {"status": "PAID"}, {"status": "FAILED"})


async def test_replay_names_missing_and_extra_rows(pool: asyncpg.Pool) -> None:
    await _run(EventStore(pool), "y-", PROGRAM[:3])
    await pool.execute("DELETE FROM outbox")
    await pool.execute("INSERT INTO escrows SELECT 'ghost', currency, 1, 0, 0, 1, created_at, updated_at FROM escrows")
    dirty = {d.table: d for d in await replay_and_diff(pool, "replay_t") if not d.clean}
    assert [r["payout_id"] for r in dirty["outbox"].only_replayed] == ["y-po0"]
    assert [r["escrow_id"] for r in dirty["escrows"].only_live] == ["ghost"]



async def _webhook(store: EventStore, event_id: str, payout_id: str) -> None:
    """A provider event received and applied, projected inline like the webhooks route and runner do."""
    received = ProviderEventReceived(event_id=event_id, type="payout.paid", provider_payout_id=f"po_{payout_id}",
                                     payout_id=payout_id, status="paid", amount=1000, currency="USD")
    async with store.pool.acquire() as conn, conn.transaction():
        recorded = await store.append([StreamAppend(provider_events.stream(event_id), NO_STREAM, [
            REGISTRY.to_new(received, {"actor": "provider"}),
            REGISTRY.to_new(ProviderEventApplied(outcome="applied"), {"actor": "test"})])], conn=conn)
        await apply_all(conn, recorded)


def bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rows, "COPY_FROM", 1)


def row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rows, "COPY_FROM", 10**9)


async def test_copy_and_unnest_inserts_build_the_same_rows(pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of COPY_FROM rows or more are inserted with COPY (replay's pages), smaller ones with
    INSERT ... unnest (the inline path): live tables written one way equal a replay done the other way."""
    store = EventStore(pool)
    bulk(monkeypatch)  # every insert, live and replayed, through COPY
    await _run(store, "c-", PROGRAM)
    await _webhook(store, "evt_c", "c-po0")
    row_by_row(monkeypatch)  # replay through unnest
    assert all(d.clean for d in await replay_and_diff(pool, "replay_t"))
    await _run(store, "u-", PROGRAM)  # live through unnest
    await _webhook(store, "evt_u", "u-po0")
    bulk(monkeypatch)  # replay through COPY
    diffs = await replay_and_diff(pool, "replay_t")
    assert all(d.clean for d in diffs), [d for d in diffs if not d.clean]
    assert await pool.fetchval("SELECT count(*) FROM ledger_entries WHERE group_id LIKE '%u-%'") > 0
    assert await pool.fetchval("SELECT count(*) FROM provider_events WHERE outcome = 'applied'") == 2

    await pool.execute("UPDATE ledger_entries SET credit = credit + 1 WHERE group_id LIKE '%c-%' AND line = 2 "
                       "AND credit > 0 AND group_id = (SELECT min(group_id) FROM ledger_entries "
                       "WHERE group_id LIKE '%c-%' AND line = 2 AND credit > 0)")
    dirty = {d.table: d for d in await replay_and_diff(pool, "replay_t") if not d.clean}
    assert list(dirty) == ["ledger_entries"] and len(dirty["ledger_entries"].changed) == 1
