"""The provider simulator's state: payouts, idempotency records, events, counters and the fault dice.

No I/O and no awaits: every method runs to completion inside one event-loop step, so two requests
with the same Idempotency-Key can never both create a payout. The aiohttp layer (simulator.py) and
the webhook sender (sim_webhooks.py) act on the decisions taken here.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from periodya.provider.sim_config import SimConfig

STAT_NAMES = ("payoutsCreated", "idempotentReplays", "webhooksSent", "webhooksDropped", "webhooksFailed",
              "webhooksSkipped", "errorsInjected", "dropsAfterCreate", "duplicatesSent", "badSignaturesSent",
              "payoutsSettled")
_CREATE_PARAMS = {"amount", "currency", "destination", "description", "method", "statement_descriptor"}
_TRANSITIONS = {"pending": {"in_transit", "paid", "failed", "canceled"}, "in_transit": {"paid", "failed"},
                "paid": {"failed"}, "failed": set(), "canceled": set()}
EVENT_TYPES = {"paid": "payout.paid", "failed": "payout.failed", "canceled": "payout.canceled",
               "in_transit": "payout.updated"}
DEFAULT_FAILURE = ("account_closed", "The bank account has been closed.")


class SimRequestError(Exception):
    """A Stripe-style error answer: HTTP status plus `{"error": {type, code, message, param}}`."""

    def __init__(self, status: int, error_type: str, message: str, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {k: v for k, v in
                               {"type": error_type, "code": code, "message": message, "param": param}.items()
                               if v is not None}}


@dataclass(frozen=True)
class SimPayout:
    id: str
    amount: int
    currency: str
    destination: str
    status: str
    metadata: dict[str, str]
    created: int
    failure_code: str | None = None
    failure_message: str | None = None

    def wire(self) -> dict[str, Any]:
        """The payout as a Stripe payout object."""
        return {"id": self.id, "object": "payout", "amount": self.amount, "currency": self.currency,
                "destination": self.destination, "status": self.status, "metadata": dict(self.metadata),
                "created": self.created, "arrival_date": self.created + 86400, "failure_code": self.failure_code,
                "failure_message": self.failure_message, "livemode": False, "method": "standard",
                "type": "bank_account"}


@dataclass(frozen=True)
class Created:
    """What a create did: the body to answer with, and what the transport should do about it."""

    body: dict[str, Any]
    replayed: bool = False
    drop_connection: bool = False
    settle_as: str | None = None
    """With autoSettle: the status this payout will settle to after settleDelayMs."""


@dataclass(frozen=True)
class Delivery:
    """One decided webhook delivery. The dice are thrown when the event happens, not when it is sent."""

    event_id: str
    body: bytes
    url: str | None
    delay_s: float = 0.0
    drop: bool = False
    duplicate: bool = False
    bad_signature: bool = False


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _parse_create(params: Mapping[str, str]) -> tuple[int, str, str, dict[str, str]]:
    metadata: dict[str, str] = {}
    for key, value in params.items():
        if key.startswith("metadata[") and key.endswith("]") and len(key) > len("metadata[]"):
            metadata[key[len("metadata["):-1]] = value
        elif key not in _CREATE_PARAMS:
            raise SimRequestError(400, "invalid_request_error", f"Received unknown parameter: {key}",
                                  "parameter_unknown", key)
    for name in ("amount", "currency", "destination"):
        if not params.get(name):
            raise SimRequestError(400, "invalid_request_error", f"Missing required param: {name}.",
                                  "parameter_missing", name)
    raw_amount, currency = params["amount"], params["currency"]
    if not (raw_amount.isascii() and raw_amount.isdigit()):
        raise SimRequestError(400, "invalid_request_error", "Invalid integer: " + raw_amount[:40],
                              "parameter_invalid_integer", "amount")
    if int(raw_amount) <= 0:
        raise SimRequestError(400, "invalid_request_error", "Amount must be at least 1.", "amount_too_small", "amount")
    if len(currency) != 3 or not (currency.isascii() and currency.isalpha()):
        raise SimRequestError(400, "invalid_request_error", f"Invalid currency: {currency[:40]}",
                              "parameter_invalid", "currency")
    return int(raw_amount), currency.lower(), params["destination"], metadata


@dataclass
class SimState:
    """Everything the simulator holds. Payouts are kept in creation order for newest-first pagination."""

    config: SimConfig = field(default_factory=SimConfig)
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    stats: Counter[str] = field(default_factory=Counter)
    payouts: dict[str, SimPayout] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list)
    _position: dict[str, int] = field(default_factory=dict)
    _idempotency: dict[str, tuple[tuple[tuple[str, str], ...], dict[str, Any]]] = field(default_factory=dict)

    def configure(self, changes: Mapping[str, Any]) -> SimConfig:
        """Apply a partial config (raises pydantic.ValidationError); a `seed` in it re-seeds the dice."""
        self.config = self.config.merged(changes)
        if "seed" in changes and self.config.seed is not None:
            self.rng.seed(self.config.seed)
        return self.config

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def counters(self) -> dict[str, int]:
        return {name: self.stats[name] for name in (*STAT_NAMES, *sorted(set(self.stats) - set(STAT_NAMES)))}

    def create(self, params: Mapping[str, str], idempotency_key: str | None) -> Created:
        """Create a payout, or replay the first answer given for this Idempotency-Key (same params only)."""
        fingerprint = tuple(sorted(params.items()))
        if idempotency_key is not None and idempotency_key in self._idempotency:
            first_params, body = self._idempotency[idempotency_key]
            if first_params != fingerprint:
                raise SimRequestError(400, "idempotency_error", (
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{idempotency_key}' if you meant to execute a different "
                    "request."))
            self.stats["idempotentReplays"] += 1
            return Created(body, replayed=True)
        amount, currency, destination, metadata = _parse_create(params)
        payout = SimPayout(new_id("po_"), amount, currency, destination, "pending", metadata, int(self.clock()))
        self.payouts[payout.id] = payout
        self._position[payout.id] = len(self._order)
        self._order.append(payout.id)
        body = payout.wire()
        if idempotency_key is not None:
            self._idempotency[idempotency_key] = (fingerprint, body)
        self.stats["payoutsCreated"] += 1
        settle_as = None
        if self.config.auto_settle:
            settle_as = "paid" if self.rng.random() < self.config.paid_ratio else "failed"
        drop = self.roll(self.config.drop_after_create_rate)
        if drop:
            self.stats["dropsAfterCreate"] += 1
        return Created(body, drop_connection=drop, settle_as=settle_as)

    def get(self, payout_id: str) -> SimPayout:
        payout = self.payouts.get(payout_id)
        if payout is None:
            raise SimRequestError(404, "invalid_request_error", f"No such payout: '{payout_id[:80]}'",
                                  "resource_missing", "id")
        return payout

    def page(self, limit: int, starting_after: str | None) -> tuple[list[SimPayout], bool]:
        """Newest first, like Stripe: `starting_after` is the last id of the previous page."""
        end = len(self._order)
        if starting_after is not None:
            if starting_after not in self._position:
                raise SimRequestError(400, "invalid_request_error", f"No such payout: '{starting_after[:80]}'",
                                      "resource_missing", "starting_after")
            end = self._position[starting_after]
        start = max(0, end - limit)
        return [self.payouts[i] for i in reversed(self._order[start:end])], start > 0

    def transition(self, payout_id: str, status: str, failure_code: str | None = None,
                   failure_message: str | None = None) -> dict[str, Any]:
        """Move a payout to `status` and return the webhook event that reports it."""
        payout = self.get(payout_id)
        if status not in _TRANSITIONS.get(payout.status, set()):
            raise SimRequestError(400, "invalid_request_error",
                                  f"Payout {payout.id} is {payout.status} and cannot become {status}",
                                  "payout_invalid_transition", "status")
        if status == "failed":
            failure_code = failure_code or DEFAULT_FAILURE[0]
            failure_message = failure_message or DEFAULT_FAILURE[1]
        else:
            failure_code = failure_message = None
        payout = replace(payout, status=status, failure_code=failure_code, failure_message=failure_message)
        self.payouts[payout.id] = payout
        self.stats["payoutsSettled"] += 1
        event: dict[str, Any] = {"id": new_id("evt_"), "object": "event", "type": EVENT_TYPES[status],
                                 "created": int(self.clock()), "livemode": False, "data": {"object": payout.wire()}}
        self.events[event["id"]] = event
        return event

    def plan_delivery(self, event: dict[str, Any]) -> Delivery:
        """Throw the webhook dice for one event."""
        cfg = self.config
        body = json.dumps(event, separators=(",", ":")).encode("utf-8")
        delivery = Delivery(event["id"], body, cfg.webhook_url, delay_s=cfg.webhook_delay_ms / 1000)
        if self.roll(cfg.webhook_drop_rate):
            return replace(delivery, drop=True)
        return replace(delivery, duplicate=self.roll(cfg.webhook_duplicate_rate),
                       bad_signature=self.roll(cfg.bad_signature_rate))
