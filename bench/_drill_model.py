"""The drill's HTTP client and its model of what every balance must be.

`Api.call` is the only way the drill talks to the system. It goes to the two servers in turn. A request
whose answer was lost (the server was SIGKILLed, the connection reset) is ambiguous: it may or may not
have been written. The client resolves it the way the contract allows: it sends the same request with
the same Idempotency-Key again, to the other server, until an answer arrives. A stored answer comes
back if the first attempt was written; otherwise the retry decides afresh. Either way exactly one
decision exists, and the model records the answer that finally came. Admin commands are idempotent
by contract (a repeat is a no-op), so they are retried the same way. A 5xx is never a valid answer: it
is recorded as a finding and the request retried; CONCURRENCY_CONFLICT (a refusal that wrote nothing)
is retried with the same key too.

The model is built only from answers: escrows (funded, released, refunded, fees), each payee's
released total, and every payout accepted (201) with its amount. At the end the provider simulator
tells which payouts were paid; the balances must follow from that and the model alone.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

TERMINAL = frozenset({"FINALIZED", "FAILED", "CANCELLED"})


@dataclass
class Escrow:
    escrow_id: str
    currency: str
    funded: int
    released: int = 0
    refunded: int = 0
    fees: int = 0

    @property
    def balance(self) -> int:
        return self.funded - self.released - self.refunded


@dataclass
class Payout:
    payout_id: str
    payee_id: str
    amount: int
    currency: str
    key: str
    cancelled: bool = False  # our cancel was answered 200
    quarantined: bool = False
    status: str | None = None  # last status seen
    provider_payout_id: str | None = None  # as last seen


@dataclass
class Payee:
    payee_id: str
    currency: str
    released: int = 0
    payouts: list[str] = field(default_factory=list)


@dataclass
class Model:
    escrows: dict[str, Escrow] = field(default_factory=dict)
    payees: dict[str, Payee] = field(default_factory=dict)
    payouts: dict[str, Payout] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> payout id

    def reserved(self, payee: Payee) -> int:
        return sum(self.payouts[p].amount for p in payee.payouts)

    def surely_available(self, payee: Payee) -> int:
        """A lower bound of `available`: every payout accepted is counted as gone (funds only come back)."""
        return payee.released - self.reserved(payee)

    def fees(self, currency: str) -> int:
        return sum(e.fees for e in self.escrows.values() if e.currency == currency)


@dataclass
class Findings:
    """What the drill saw that the contract forbids, and counters for the summary."""

    ambiguous: int = 0  # answers lost, resolved by the Idempotency-Key retry
    duplicates: int = 0
    lost: int = 0
    unbalanced: int = 0
    not_terminal: int = 0
    problems: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print(f"drill: PROBLEM {text}", flush=True)


class Api:
    """Round-robin over both servers; retries lost answers with the same request and key."""

    def __init__(self, http: aiohttp.ClientSession, apis: list[str], service_token: str, admin_token: str,
                 findings: Findings, *, give_up_after: float = 180.0) -> None:
        self.http, self.apis, self.findings = http, apis, findings
        self.service, self.admin = service_token, admin_token
        self._next = itertools.count()
        self.give_up_after = give_up_after

    async def call(self, method: str, path: str, *, admin: bool = False, body: Any = None,
                   key: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.admin if admin else self.service}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        deadline = time.monotonic() + self.give_up_after
        lost = False
        while True:
            api = self.apis[next(self._next) % len(self.apis)]
            try:
                async with self.http.request(method, f"{api}{path}", json=body, headers=headers) as r:
                    text = await r.text()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not lost and method == "POST":
                    self.findings.ambiguous += 1
                lost = True
                self.findings.counts[f"transport {type(exc).__name__}"] += 1
            else:
                try:
                    answer: Any = orjson.loads(text) if text else {}
                except orjson.JSONDecodeError:
                    answer = None
                if not isinstance(answer, dict):  # never valid from this API: the caller's status check names it
                    answer = {"unparsed": text[:500]}
                code = answer.get("code")
                if status >= 500:
                    self.findings.problem(f"{method} {path} answered {status}: {answer}")
                elif status == 409 and code == "CONCURRENCY_CONFLICT":
                    self.findings.counts["409 CONCURRENCY_CONFLICT (retried)"] += 1
                else:
                    return status, answer
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: no answer from any server for {self.give_up_after:.0f} s")
            await asyncio.sleep(0.2)

    async def expect(self, wanted: tuple[int, ...], method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """`call`, recording a finding when the status is not one of `wanted`."""
        status, answer = await self.call(method, path, **kwargs)
        if status not in wanted:
            self.findings.problem(f"{method} {path} {kwargs.get('body')!r}: expected {wanted}, got {status} {answer}")
        return status, answer
