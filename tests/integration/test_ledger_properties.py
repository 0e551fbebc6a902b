"""Property-based: random programs of commands keep every money invariant, agree with an independent model
of the balances, and replay rebuilds the views.

Programs are generated to mostly succeed (an escrow is funded before it is released, released before its
payee asks for a payout, amounts within the balance), with about one command in ten meant to be refused
(over the balance, funding twice, settling a settled payout), so each example runs tens of commands that
really move money. The model (`Model`) is plain Python arithmetic over the commands: it predicts which
commands are refused and what every balance, escrow and payout status is afterwards; the database must
agree exactly, besides the global invariants and live == replay.

One database serves every example (creating one per example would dominate the run); each example uses
fresh ids, and the global accounts (cash, revenue) are compared by their change over the example.
`PERIODYA_PROPERTY_EXAMPLES` raises the example count (`python -m bench properties` does);
`PERIODYA_PROPERTY_STATS` names a file that gets one JSON line per example (commands run, refused).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from periodya.audit.replay import replay_and_diff
from periodya.domain import escrow, payout
from periodya.domain.errors import DomainError
from periodya.eventstore import EventStore
from periodya.handlers import platform
from periodya.handlers.unit_of_work import Meta, UnitOfWork, run_command
from tests.integration import lifecycle
from tests.integration.invariants import assert_money_invariants

META = Meta(actor="test:property")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
EXAMPLES = int(os.environ.get("PERIODYA_PROPERTY_EXAMPLES", "12"))
CURRENCIES = ("USD", "EUR")
PAYEES = 3
Op = tuple[Any, ...]


amounts = st.integers(min_value=1, max_value=5_000)
ops = st.one_of(  # unguided commands, most of them refused (other modules' tests use them as noise)
    st.tuples(st.just("fund"), st.integers(0, 2), amounts, st.sampled_from(CURRENCIES)),
    st.tuples(st.just("release"), st.integers(0, 2), st.integers(0, 2), amounts, st.integers(0, 300)),
    st.tuples(st.just("refund"), st.integers(0, 2), amounts),
    st.tuples(st.just("request"), st.integers(0, 2), amounts, st.sampled_from(CURRENCIES)),
    st.tuples(st.just("paid"), st.integers(0, 5)),
    st.tuples(st.just("failed"), st.integers(0, 5)),
    st.tuples(st.just("quarantine_cancel"), st.integers(0, 5)),
)


@dataclass
class Model:
    """The ledger as plain arithmetic: balances are credits minus debits per (account, currency), as in
    the service (liabilities positive, cash negative)."""

    balances: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    escrows: dict[int, dict[str, Any]] = field(default_factory=dict)
    payouts: list[dict[str, Any]] = field(default_factory=list)

    def move(self, src: str, dst: str, cur: str, amount: int) -> None:
        self.balances[(src, cur)] -= amount
        self.balances[(dst, cur)] += amount

    def escrow_balance(self, e: int) -> int:
        x = self.escrows.get(e)
        return 0 if x is None else int(x["funded"] - x["released"] - x["refunded"])

    def apply(self, op: Op) -> bool:
        """Apply `op`; False when the service must refuse it (and nothing changes)."""
        match op:
            case ("fund", e, amount, cur):
                if e in self.escrows:
                    return False
                self.escrows[e] = {"currency": cur, "funded": amount, "released": 0, "refunded": 0}
                self.move("cash", f"escrow:{e}", cur, amount)
            case ("release", e, p, amount, fee):
                if e not in self.escrows or amount + fee > self.escrow_balance(e):
                    return False
                x = self.escrows[e]
                x["released"] += amount + fee
                self.move(f"escrow:{e}", f"payable:{p}", x["currency"], amount)
                if fee:
                    self.move(f"escrow:{e}", "revenue", x["currency"], fee)
            case ("refund", e, amount):
                if e not in self.escrows or amount > self.escrow_balance(e):
                    return False
                self.escrows[e]["refunded"] += amount
                self.move(f"escrow:{e}", "cash", self.escrows[e]["currency"], amount)
            case ("request", p, amount, cur):
                if amount > self.balances[(f"payable:{p}", cur)]:
                    return False
                self.payouts.append({"payee": p, "amount": amount, "currency": cur, "status": "REQUESTED"})
                self.move(f"payable:{p}", f"inflight:{p}", cur, amount)
            case ("paid", i):
                po = self.payouts[i]
                if po["status"] in ("FAILED", "CANCELLED"):
                    return False
                if po["status"] == "REQUESTED":  # sent, paid, finalized: the money leaves
                    po["status"] = "FINALIZED"
                    self.move(f"inflight:{po['payee']}", "cash", po["currency"], po["amount"])
            case ("failed", i):
                po = self.payouts[i]
                if po["status"] == "REQUESTED":  # funds back to the payee
                    self.move(f"inflight:{po['payee']}", f"payable:{po['payee']}", po["currency"], po["amount"])
                elif po["status"] == "FINALIZED":  # paid, then failed: compensated from cash
                    self.move("cash", f"payable:{po['payee']}", po["currency"], po["amount"])
                if po["status"] in ("REQUESTED", "FINALIZED"):
                    po["status"] = "FAILED"
            case ("quarantine_cancel", i):
                po = self.payouts[i]
                if po["status"] != "REQUESTED":
                    return False
                po["status"] = "CANCELLED"
                self.move(f"inflight:{po['payee']}", f"payable:{po['payee']}", po["currency"], po["amount"])
            case _:
                raise AssertionError(f"unknown op {op}")
        return True


@st.composite
def programs(draw: st.DrawFn, min_size: int = 20, max_size: int = 50) -> list[Op]:
    """A program that mostly succeeds: each command is drawn against a model of what came before."""
    m = Model()
    program: list[Op] = []
    size = draw(st.integers(min_size, max_size))
    wrongs = 0
    for _ in range(size):
        wrong = wrongs < size // 10 and draw(st.integers(0, 9)) == 0  # at most one in ten meant to be refused
        wrongs += wrong
        funded = [e for e in m.escrows if m.escrow_balance(e) > 0]
        payable = [(p, c) for p in range(PAYEES) for c in CURRENCIES if m.balances[(f"payable:{p}", c)] > 0]
        requested = [i for i, po in enumerate(m.payouts) if po["status"] == "REQUESTED"]
        settleable = [i for i, po in enumerate(m.payouts) if po["status"] in ("REQUESTED", "FINALIZED")]
        choices = ["fund"] + ["release", "refund"] * bool(funded) + ["request"] * bool(payable) * 2
        choices += ["paid", "failed"] * bool(settleable) + ["paid", "quarantine_cancel"] * bool(requested)
        kind = draw(st.sampled_from(choices))
        op: Op
        if kind == "fund":
            e = draw(st.sampled_from(list(m.escrows))) if wrong and m.escrows else len(m.escrows)
            op = ("fund", e, draw(st.integers(1, 10_000)), draw(st.sampled_from(CURRENCIES)))
        elif kind == "release":
            e = draw(st.sampled_from(funded))
            bal = m.escrow_balance(e)
            fee = draw(st.integers(0, min(300, bal - 1)))
            amount = bal - fee + 1 if wrong else draw(st.integers(1, bal - fee))
            op = ("release", e, draw(st.integers(0, PAYEES - 1)), amount, fee)
        elif kind == "refund":
            e = draw(st.sampled_from(funded))
            bal = m.escrow_balance(e)
            op = ("refund", e, bal + 1 if wrong else draw(st.integers(1, bal)))
        elif kind == "request":
            p, cur = draw(st.sampled_from(payable))
            bal = m.balances[(f"payable:{p}", cur)]
            op = ("request", p, bal + 1 if wrong else draw(st.integers(1, bal)), cur)
        else:
            pool = range(len(m.payouts)) if wrong else (requested if kind == "quarantine_cancel" else settleable)
            op = (kind, draw(st.sampled_from(list(pool))))
        m.apply(op)
        program.append(op)
    return program


async def _settle(u: UnitOfWork, pid: str, *, paid: bool) -> None:
    """Send a requested payout and record the provider's answer, in one command."""
    state = await u.load_payout(pid)
    if state is not None and state.status == payout.REQUESTED:
        await lifecycle.start_send(u, pid, NOW)
        await lifecycle.record_sent(u, pid, f"po_{pid}", "outbox")
    if paid:
        await lifecycle.record_paid(u, pid, f"po_{pid}", "webhook")
    else:
        await lifecycle.record_failed(u, pid, f"po_{pid}", "webhook")


async def _quarantine_cancel(u: UnitOfWork, pid: str) -> None:
    await lifecycle.quarantine(u, pid, "test")
    await lifecycle.cancel(u, pid, "test", provider_has_none=False)


def _command(prefix: str, op: Op, payouts: list[str]) -> Any:
    match op:
        case ("fund", e, amount, cur):
            return partial(platform.fund_escrow, cmd=escrow.FundEscrow(f"{prefix}e{e}", amount, cur))
        case ("release", e, p, amount, fee):
            return partial(platform.release_escrow,
                           cmd=escrow.ReleaseEscrow(f"{prefix}e{e}", f"{prefix}p{p}", amount, fee))
        case ("refund", e, amount):
            return partial(platform.refund_escrow, cmd=escrow.RefundEscrow(f"{prefix}e{e}", amount))
        case ("request", p, amount, cur):
            cmd = payout.RequestPayout(f"{prefix}po{len(payouts)}", f"{prefix}p{p}", amount, cur, "ba")
            return partial(platform.request_payout, cmd=cmd)
        case ("paid" | "failed" as kind, i):
            return partial(_settle, pid=payouts[i], paid=kind == "paid")
        case ("quarantine_cancel", i):
            return partial(_quarantine_cancel, pid=payouts[i])
    raise AssertionError(f"unknown op {op}")


async def _run(store: EventStore, prefix: str, program: list[Op], model: Model | None = None) -> int:
    """Run the program; with a model, each command must be accepted or refused as the model says.
    Returns how many commands were refused."""
    payouts: list[str] = []
    refused = 0
    for op in program:
        if op[0] in ("paid", "failed", "quarantine_cancel") and op[1] >= len(payouts):
            continue  # (only in hand-written programs run without a model)
        expected = model.apply(op) if model is not None else None
        try:
            await run_command(store, META, _command(prefix, op, payouts))
            accepted = True
        except DomainError:
            accepted = False  # refused commands (insufficient funds, wrong state) write nothing
            refused += 1
        if op[0] == "request" and accepted:
            payouts.append(f"{prefix}po{len(payouts)}")
        assert expected in (None, accepted), (op, "accepted" if accepted else "refused")
    return refused


def _account(prefix: str, name: str) -> str:
    kind, _, n = name.partition(":")
    if kind in ("cash", "revenue"):
        return f"{kind}:platform"
    return f"{kind}:{prefix}{'e' if kind == 'escrow' else 'p'}{n}"


async def _globals(pool: asyncpg.Pool) -> dict[tuple[str, str], int]:
    rows = await pool.fetch("SELECT account, currency, balance FROM balances WHERE account IN "
                            "('cash:platform', 'revenue:platform')")
    return {(r["account"], r["currency"]): r["balance"] for r in rows}


async def assert_matches_model(pool: asyncpg.Pool, prefix: str, model: Model,
                               globals_before: dict[tuple[str, str], int]) -> None:
    rows = await pool.fetch("SELECT account, currency, balance FROM balances WHERE account LIKE $1",
                            f"%:{prefix}%")
    live = {(r["account"], r["currency"]): r["balance"] for r in rows if r["balance"] != 0}
    expected = {(_account(prefix, a), c): b for (a, c), b in model.balances.items()
                if b != 0 and a not in ("cash", "revenue")}
    assert live == expected
    after = await _globals(pool)
    for name in ("cash", "revenue"):
        for cur in CURRENCIES:
            key = (f"{name}:platform", cur)
            assert after.get(key, 0) - globals_before.get(key, 0) == model.balances.get((name, cur), 0), key
    escrows = {r["escrow_id"]: dict(r) for r in await pool.fetch(
        "SELECT escrow_id, currency, funded, released, refunded FROM escrows WHERE escrow_id LIKE $1", f"{prefix}%")}
    assert escrows == {f"{prefix}e{e}": {"escrow_id": f"{prefix}e{e}", **x} for e, x in model.escrows.items()}
    statuses = dict(await pool.fetch("SELECT payout_id, status FROM payouts WHERE payout_id LIKE $1", f"{prefix}%"))
    assert statuses == {f"{prefix}po{i}": po["status"] for i, po in enumerate(model.payouts)}


def _record_stats(program: list[Op], refused: int) -> None:
    path = os.environ.get("PERIODYA_PROPERTY_STATS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"commands": len(program), "refused": refused}) + "\n")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
@given(program=programs())
async def test_random_programs_agree_with_the_model_and_keep_money_invariants(
        pool: asyncpg.Pool, program: list[Op]) -> None:
    store = EventStore(pool)
    prefix = uuid.uuid4().hex[:8] + "-"
    before = await _globals(pool)
    model = Model()
    refused = await _run(store, prefix, program, model)
    _record_stats(program, refused)
    assert refused <= len(program) // 10, (refused, len(program))  # only the commands meant to be refused
    await assert_matches_model(pool, prefix, model, before)
    await assert_money_invariants(pool)
    diffs = await replay_and_diff(pool, "replay_property")
    assert [d.table for d in diffs if not d.clean] == [], [d for d in diffs if not d.clean]


def test_the_model_refuses_what_the_service_refuses() -> None:
    """The model on its own: a known program and its known outcome."""
    m = Model()
    outcomes = [m.apply(op) for op in [
        ("fund", 0, 1000, "USD"), ("fund", 0, 5, "USD"), ("release", 0, 1, 600, 40), ("release", 0, 1, 400, 0),
        ("request", 1, 601, "USD"), ("request", 1, 500, "USD"), ("request", 1, 100, "USD"), ("paid", 0),
        ("quarantine_cancel", 1), ("quarantine_cancel", 0), ("failed", 0), ("paid", 0), ("refund", 0, 360),
        ("refund", 0, 361)]]
    assert outcomes == [True, False, True, False, False, True, True, True, True, False, True, False, True, False]
    assert {k: v for k, v in m.balances.items() if v} == {
        ("cash", "USD"): -1000 + 500 - 500 + 360, ("payable:1", "USD"): 600, ("revenue", "USD"): 40}
    assert m.escrow_balance(0) == 0
    assert [po["status"] for po in m.payouts] == ["FAILED", "CANCELLED"]


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
        await asyncio.gather(*(_run(store, prefix, program[i:] + program[:i]) for i in range(8)))
    await assert_money_invariants(pool)
