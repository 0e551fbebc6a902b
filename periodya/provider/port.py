"""The payout provider port: what the outbox, reconcile-pull and repair runners need from a provider.

Money safety rests on one rule: the provider's idempotency key is our payout id, always. A create
that ended in `ProviderUnavailable` may or may not have made a payout; sending it again with the same
key can never make a second one, and `find_by_payout_id` tells repair which it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from periodya.errors import PeriodyaError

PayoutStatus = Literal["pending", "in_transit", "paid", "failed", "canceled"]
PAYOUT_STATUSES: frozenset[str] = frozenset(get_args(PayoutStatus))
FINAL_STATUSES: frozenset[str] = frozenset({"paid", "failed", "canceled"})
"""Statuses the provider reports as settled ("paid" can still turn "failed" later, as a new event)."""


@dataclass(frozen=True)
class ProviderPayout:
    """A payout as the provider sees it. `currency` is upper-case ISO 4217 (our convention, not the wire's).

    `payout_id` is our id, read back from the provider's `metadata.payout_id` (None if absent).
    """

    id: str
    amount: int
    currency: str
    destination: str
    status: PayoutStatus
    payout_id: str | None
    failure_code: str | None = None
    failure_message: str | None = None
    created: int | None = None


class ProviderError(PeriodyaError):
    """Base of every provider failure."""

    code = "PROVIDER_ERROR"


class ProviderUnavailable(ProviderError):
    """Transient: 5xx, 429, 409 (key in use), timeout, connection refused or closed without a response,
    or an unreadable answer. A create that raised this MAY have made the payout: retry with the same
    payout id (same idempotency key) or ask `find_by_payout_id`; never fail the payout because of it."""

    code = "PROVIDER_UNAVAILABLE"


class ProviderRejected(ProviderError):
    """Permanent: the provider refused the request (4xx) and made nothing. Sending it again will not help.

    `provider_code` / `provider_message` are the provider's own (`error.code`, `error.message`); the
    class attribute `code` stays our stable machine code.
    """

    code = "PROVIDER_REJECTED"

    def __init__(self, status: int, error_type: str | None, provider_code: str | None,
                 provider_message: str, param: str | None = None) -> None:
        super().__init__(f"provider refused the request ({status} {provider_code or error_type}): {provider_message}")
        self.status = status
        self.error_type = error_type
        self.provider_code = provider_code
        self.provider_message = provider_message
        self.param = param


class ProviderNotFound(ProviderError):
    """The provider has no such payout (404)."""

    code = "PROVIDER_NOT_FOUND"


class ProviderAuthFailed(ProviderError):
    """401/403: our API key is wrong or lacks permission. Nothing was created, but this is a configuration
    problem, not a verdict on the payout: do not fail the payout, back off and alert."""

    code = "PROVIDER_AUTH_FAILED"


class ProviderIdempotencyMismatch(ProviderError):
    """The idempotency key (our payout id) was already used with different parameters. A provider payout
    may exist for this id with another amount or destination: quarantine, never fail-and-refund."""

    code = "PROVIDER_IDEMPOTENCY_MISMATCH"


class PayoutProvider(Protocol):
    """The provider port. Implemented over HTTP by `StripePayoutsClient`; the simulator stands behind it
    in tests. Every method raises `ProviderError` subclasses only (plus cancellation)."""

    async def create_payout(self, payout_id: str, amount: int, currency: str, destination: str) -> ProviderPayout:
        """Ask the provider to pay `amount` minor units of `currency` to `destination`.

        Idempotency-Key is `payout_id` and `metadata[payout_id]` carries it too, so the same call repeated
        (after a crash, a timeout, a dropped connection) returns the payout made the first time. Such a
        replay carries the first answer (Stripe semantics), so its status may be stale: ask
        `retrieve_payout` for the current one.
        """
        ...

    async def retrieve_payout(self, provider_payout_id: str) -> ProviderPayout:
        """The provider's current view of one payout; `ProviderNotFound` if it has none by that id."""
        ...

    async def find_by_payout_id(self, payout_id: str) -> ProviderPayout | None:
        """The provider payout whose metadata names our `payout_id` (newest first), or None if there is none.

        Used by repair after a crash mid-send. Scans the provider's list page by page, so it costs more the
        older the payout is.
        """
        ...

    async def list_payouts(self, limit: int = 100, starting_after: str | None = None,
                           ) -> tuple[list[ProviderPayout], bool]:
        """One page of payouts, newest first, and whether more follow (`has_more`)."""
        ...
