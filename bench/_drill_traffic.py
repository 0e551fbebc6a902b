"""The drill's randomized traffic, admin session and process killer.

Workers (each owns a disjoint set of payees, so a payee's model is updated by one coroutine and the
lower bound of its available balance stays exact) fund escrows, release them to their payees (fee to
revenue), refund what is left of some, and request payouts of at most what is surely available: such a
request must be accepted. Some requests repeat their Idempotency-Key (same body: the same payout must
come back, also when both servers get it at once; a different body: 409 IDEMPOTENCY_KEY_REUSED), some
ask for more than the payee was ever released (409 INSUFFICIENT_FUNDS). An admin coroutine quarantines
a few payouts (cancelling some at once), and force-reconciles and force-finalizes a few. The killer
SIGKILLs a random server or cron loop at random moments spread over the run and starts it again.

`Gate` lets the drill pause the workers to take an `as-of` moment when no escrow command is in flight.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from bench import _common as c
from bench._drill_model import Api, Escrow, Findings, Model, Payee, Payout

CURRENCIES = ("USD", "EUR")


class Gate:
    """Workers pass `enter()`/`leave()` around each operation; `pause()` waits until none is inside."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.inside = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def enter(self) -> None:
        await self.open.wait()
        self.inside += 1
        self.idle.clear()

    def leave(self) -> None:
        self.inside -= 1
        if self.inside == 0:
            self.idle.set()

    async def pause(self) -> None:
        self.open.clear()
        await self.idle.wait()

    def resume(self) -> None:
        self.open.set()


@dataclass
class Traffic:
    api: Api
    model: Model
    findings: Findings
    rng: random.Random
    target: int  # payouts to create
    run_id: str
    gate: Gate = field(default_factory=Gate)
    serial: int = 0
    asking: int = 0  # payout requests in flight: accepted + asking never exceeds `target`
    waiting: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.run_id}-{self.serial}"

    @property
    def done(self) -> bool:
        return len(self.model.payouts) >= self.target

    async def reached(self, count: int) -> None:
        """Wait until `count` payouts were accepted (or the traffic is done)."""
        if len(self.model.payouts) < min(count, self.target):
            future = asyncio.get_running_loop().create_future()
            self.waiting.append((min(count, self.target), future))
            await future

    # --- escrows ---------------------------------------------------------------------------------------
    async def fund_and_release(self, payee: Payee) -> None:
        rng, api = self.rng, self.api
        escrow_id = self.next_id("esc")
        amount = rng.randint(2_000, 20_000)
        body = {"escrowId": escrow_id, "amount": amount, "currency": payee.currency}
        status, _ = await api.expect((201,), "POST", "/api/escrows", body=body, key=f"k-{escrow_id}")
        if status != 201:
            return
        escrow = self.model.escrows[escrow_id] = Escrow(escrow_id, payee.currency, amount)
        if rng.random() < 0.1:  # the same command again: the first answer, nothing new
            _, again = await api.expect((201,), "POST", "/api/escrows", body=body, key=f"k-{escrow_id}")
            if isinstance(again, dict) and again.get("funded") != amount:
                self.findings.problem(f"repeated escrow create {escrow_id} answered {again}")
        fee = amount * 3 // 100
        release = rng.randint(amount // 2, amount - fee)
        path = f"/api/escrows/{escrow_id}/release"
        status, answer = await api.expect((200,), "POST", path, key=f"k-{escrow_id}-release",
                                          body={"payeeId": payee.payee_id, "amount": release, "feeAmount": fee})
        if status == 200:
            escrow.released += release + fee
            escrow.fees += fee
            payee.released += release
            self._check_escrow(escrow, answer)
        if escrow.balance and rng.random() < 0.5:
            status, answer = await api.expect((200,), "POST", f"/api/escrows/{escrow_id}/refund",
                                              key=f"k-{escrow_id}-refund", body={"amount": escrow.balance})
            if status == 200:
                escrow.refunded += escrow.balance
                self._check_escrow(escrow, answer)

    def _check_escrow(self, escrow: Escrow, answer: object) -> None:
        if not isinstance(answer, dict) or answer.get("balance") != escrow.balance:
            self.findings.problem(f"escrow {escrow.escrow_id}: model balance {escrow.balance}, answer {answer}")

    # --- payouts ---------------------------------------------------------------------------------------
    async def request_payout(self, payee: Payee) -> None:
        if len(self.model.payouts) + self.asking >= self.target:  # the requests in flight make up the number
            await asyncio.sleep(0.05)
            return
        self.asking += 1
        try:
            await self._request_payout(payee)
        finally:
            self.asking -= 1

    async def _request_payout(self, payee: Payee) -> None:
        rng, f = self.rng, self.findings
        room = self.model.surely_available(payee)
        amount = rng.randint(1, min(room, 3_000))
        key = self.next_id("k-pay")
        body = {"payeeId": payee.payee_id, "amount": amount, "currency": payee.currency,
                "destination": f"ba_{payee.payee_id}"}
        if rng.random() < 0.05:  # the same request to both servers at once: one payout, one answer twice
            f.counts["same key on both servers at once"] += 1
            (status, answer), (status2, answer2) = await asyncio.gather(*(
                self.api.expect((201,), "POST", "/api/payouts", body=body, key=key) for _ in range(2)))
            if status2 == 201 and status == 201 and answer2["payoutId"] != answer["payoutId"]:
                f.duplicates += 1
                f.problem(f"Idempotency-Key {key} sent twice at once made two payouts: {answer['payoutId']} "
                          f"and {answer2['payoutId']}")
                self._accepted(Payout(answer2["payoutId"], payee.payee_id, amount, payee.currency, key), payee)
        else:
            status, answer = await self.api.expect((201,), "POST", "/api/payouts", body=body, key=key)
        if status != 201:
            return
        payout_id = answer["payoutId"]
        self._accepted(Payout(payout_id, payee.payee_id, amount, payee.currency, key), payee)
        roll = rng.random()
        if roll < 0.10:  # the platform retries a request it already got an answer to
            f.counts["repeated Idempotency-Key"] += 1
            status, again = await self.api.expect((201,), "POST", "/api/payouts", body=body, key=key)
            if status == 201 and again.get("payoutId") != payout_id:
                f.duplicates += 1
                f.problem(f"Idempotency-Key {key} answered two payouts: {payout_id} and {again.get('payoutId')}")
                self._accepted(Payout(again["payoutId"], payee.payee_id, amount, payee.currency, key), payee)
        elif roll < 0.13:  # the same key with another body must be refused and write nothing
            f.counts["reused key, other body"] += 1
            status, again = await self.api.expect((409,), "POST", "/api/payouts", body={**body, "amount": amount + 1},
                                                  key=key)
            if status == 201:
                self._accepted(Payout(again["payoutId"], payee.payee_id, amount + 1, payee.currency, key), payee)
            elif again.get("code") != "IDEMPOTENCY_KEY_REUSED":
                f.problem(f"reused key {key} with another body: {again}")

    async def request_too_much(self, payee: Payee) -> None:
        """More than the payee was ever released: must be 409 INSUFFICIENT_FUNDS and write nothing."""
        self.findings.counts["over the balance"] += 1
        amount = payee.released + self.rng.randint(1, 500)
        body = {"payeeId": payee.payee_id, "amount": amount, "currency": payee.currency,
                "destination": f"ba_{payee.payee_id}"}
        status, answer = await self.api.expect((409,), "POST", "/api/payouts", body=body, key=self.next_id("k-over"))
        if status == 201:
            self._accepted(Payout(answer["payoutId"], payee.payee_id, amount, payee.currency, "over"), payee)
        elif answer.get("code") != "INSUFFICIENT_FUNDS":
            self.findings.problem(f"over-balance request answered {answer}")

    def _accepted(self, payout: Payout, payee: Payee) -> None:
        self.model.payouts[payout.payout_id] = payout
        self.model.by_key.setdefault(payout.key, payout.payout_id)
        payee.payouts.append(payout.payout_id)
        for count, future in self.waiting:
            if count <= len(self.model.payouts) and not future.done():
                future.set_result(None)

    # --- workers -----------------------------------------------------------------------------------------
    async def worker(self, payees: list[Payee]) -> None:
        while not self.done:
            await self.gate.enter()
            try:
                payee = self.rng.choice(payees)
                roll = self.rng.random()
                if self.model.surely_available(payee) < 50 or roll < 0.2:
                    await self.fund_and_release(payee)
                elif roll < 0.23:
                    await self.request_too_much(payee)
                else:
                    await self.request_payout(payee)
            finally:
                self.gate.leave()

    async def admin(self) -> None:
        """Quarantine (and cancel some), force-reconcile and force-finalize a few payouts as an operator."""
        budget = max(3, self.target // 100)
        left = {"quarantine": budget, "force-reconcile": budget, "force-finalize": budget}
        while not self.done and any(left.values()):
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            recent = list(self.model.payouts.values())[-10:]
            if not recent:
                continue
            payout = self.rng.choice(recent)
            action = self.rng.choice([a for a, n in left.items() if n])
            left[action] -= 1
            await self.operator(action, payout)

    async def operator(self, action: str, payout: Payout) -> int:
        """One runbook command on `payout`; returns the status. 409 is a valid answer to all of these."""
        f = self.findings
        body = {"reason": "drill: suspected fraud"} if action in ("quarantine", "cancel") else None
        path = f"/api/admin/ops/payouts/{payout.payout_id}/{action}"
        status, answer = await self.api.expect((200, 409), "POST", path, admin=True, body=body)
        f.counts[f"{action} {status}"] += 1
        if status == 200 and action == "quarantine":
            payout.quarantined = True
            if self.rng.random() < 0.5:
                await self.operator("cancel", payout)
        if status == 200 and action == "cancel":
            payout.cancelled = True
        if status == 409 and isinstance(answer, dict) and answer.get("code") != "INVALID_STATE":
            f.problem(f"{action} {payout.payout_id} answered {answer}")
        return status


@dataclass
class Killer:
    """SIGKILLs a random server (twice as likely: they do the work) or cron loop when the payouts created
    pass each kill point, then starts it again after a random pause. Never two down at once (one kill at
    a time, restarted before the next)."""

    victims: list[c.Child]
    traffic: Traffic
    kills: int
    rng: random.Random
    done: list[str] = field(default_factory=list)

    def points(self) -> list[int]:
        n, k = self.traffic.target, self.kills
        return sorted(int(n * self.rng.uniform((i + 0.2) / k, (i + 0.9) / k)) for i in range(k))

    async def run(self) -> None:
        for point in self.points():
            await self.traffic.reached(point)
            await self.kill_one()

    async def kill_one(self) -> None:
        await asyncio.sleep(self.rng.uniform(0.0, 0.5))
        victim = self.rng.choices(self.victims, [2 if v.name.startswith("serve") else 1 for v in self.victims])[0]
        await victim.kill()
        self.done.append(victim.name)
        print(f"drill: kill {len(self.done)}: SIGKILL {victim.name} at {len(self.traffic.model.payouts)} payouts",
              flush=True)
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        await victim.start()
