"""Replay rebuilds every projection with the live apply functions; a changed live row is named exactly."""

from __future__ import annotations

import asyncpg

from periodya.eventstore import EventStore
from periodya.projections.replay import replay_and_diff
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
