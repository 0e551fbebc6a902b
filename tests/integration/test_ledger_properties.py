"""Property-based: random command sequences keep every money invariant, and replay rebuilds the views.

One database serves every example (creating one per example would dominate the run); each example
uses fresh ids, and the invariants are global, so they must hold over everything written so far.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from periodya.domain import escrow, payout
from periodya.domain.errors import DomainError
from periodya.eventstore import EventStore
from periodya.handlers import lifecycle, platform
from periodya.handlers.unit_of_work import Meta, run_command
from periodya.projections.replay import replay_and_diff
from tests.integration.invariants import assert_money_invariants

META = Meta(actor="test:property")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
amounts = st.integers(min_value=1, max_value=5_000)
ops = st.one_of(
    st.tuples(st.just("fund"), st.integers(0, 2), amounts, st.sampled_from(["USD", "EUR"])),
    st.tuples(st.just("release"), st.integers(0, 2), st.integers(0, 2), amounts, st.integers(0, 300)),
    st.tuples(st.just("refund"), st.integers(0, 2), amounts),
    st.tuples(st.just("request"), st.integers(0, 2), amounts, st.sampled_from(["USD", "EUR"])),
    st.tuples(st.just("paid"), st.integers(0, 5)),
    st.tuples(st.just("failed"), st.integers(0, 5)),
    st.tuples(st.just("quarantine_cancel"), st.integers(0, 5)),
)


async def _run(store: EventStore, prefix: str, program: list[tuple]) -> None:  # type: ignore[type-arg]
    payouts: list[str] = []
    for op in program:
        try:
            match op:
                case ("fund", e, amount, currency):
                    cmd = escrow.FundEscrow(f"{prefix}e{e}", amount, currency)
                    await run_command(store, META, lambda u, c=cmd: platform.fund_escrow(u, c))
                case ("release", e, p, amount, fee):
                    rel = escrow.ReleaseEscrow(f"{prefix}e{e}", f"{prefix}p{p}", amount, fee)
                    await run_command(store, META, lambda u, c=rel: platform.release_escrow(u, c))
                case ("refund", e, amount):
                    ref = escrow.RefundEscrow(f"{prefix}e{e}", amount)
                    await run_command(store, META, lambda u, c=ref: platform.refund_escrow(u, c))
                case ("request", p, amount, currency):
                    req = payout.RequestPayout(f"{prefix}po{len(payouts)}", f"{prefix}p{p}", amount, currency, "ba")
                    await run_command(store, META, lambda u, c=req: platform.request_payout(u, c))
                    payouts.append(req.payout_id)
                case ("paid", i) if i < len(payouts):
                    await _settle(store, payouts[i], paid=True)
                case ("failed", i) if i < len(payouts):
                    await _settle(store, payouts[i], paid=False)
                case ("quarantine_cancel", i) if i < len(payouts):
                    pid = payouts[i]
                    await run_command(store, META, lambda u, p=pid: lifecycle.quarantine(u, p, "test"))
                    await run_command(store, META,
                                      lambda u, p=pid: lifecycle.cancel(u, p, "test", provider_has_none=False))
        except DomainError:
            pass  # refused commands (insufficient funds, wrong state) write nothing; the invariants say so


async def _settle(store: EventStore, pid: str, *, paid: bool) -> None:
    """Walk a payout through send and a provider answer; a paid one may later turn failed."""
    async def send(u):  # type: ignore[no-untyped-def]
        state = await u.load_payout(pid)
        if state is not None and state.status == payout.REQUESTED:
            await lifecycle.start_send(u, pid, NOW)
            await lifecycle.record_sent(u, pid, f"po_{pid}", "outbox")

    await run_command(store, META, send)
    if paid:
        await run_command(store, META, lambda u: lifecycle.record_paid(u, pid, f"po_{pid}", "webhook"))
    else:
        await run_command(store, META, lambda u: lifecycle.record_failed(u, pid, f"po_{pid}", "webhook"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=st.lists(ops, min_size=1, max_size=25))
async def test_random_commands_keep_money_invariants(pool: asyncpg.Pool, program: list[tuple]) -> None:  # type: ignore[type-arg]
    store = EventStore(pool)
    await _run(store, uuid.uuid4().hex[:8] + "-", program)
    await assert_money_invariants(pool)
    diffs = await replay_and_diff(pool, "replay_property")
    assert [d.table for d in diffs if not d.clean] == [], [d for d in diffs if not d.clean]


async def test_concurrent_programs_sharing_accounts_and_ids_never_deadlock(pool: asyncpg.Pool) -> None:
    """Eight programs at once over the same escrows, payees and payout ids: PostgreSQL would abort one
    with DeadlockDetectedError if any command took a shared stream lock after an account lock."""
    import asyncio

    program = [("fund", 0, 5000, "USD"), ("release", 0, 0, 1500, 10), ("release", 0, 1, 1500, 10),
               ("request", 0, 300, "USD"), ("request", 1, 300, "USD"), ("paid", 0), ("failed", 1),
               ("request", 0, 200, "USD"), ("quarantine_cancel", 2), ("refund", 0, 100), ("paid", 1)]
    store = EventStore(pool)
    for round_ in range(3):
        prefix = f"dl{round_}-"
        await asyncio.wait_for(asyncio.gather(*(_run(store, prefix, program[i:] + program[:i]) for i in range(8))), 60)
    await assert_money_invariants(pool)
