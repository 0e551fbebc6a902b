"""How the adapter reads provider answers: which status means what for money (no network here)."""

from __future__ import annotations

import json

import pytest

from periodya.provider.port import (
    ProviderAuthFailed,
    ProviderError,
    ProviderIdempotencyMismatch,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from periodya.provider.stripe_adapter import _answer, payout_from_wire


def stripe_error(error_type: str, message: str = "m", code: str | None = None) -> str:
    return json.dumps({"error": {"type": error_type, "message": message, "code": code}})


@pytest.mark.parametrize(("status", "body", "expected"), [
    (500, stripe_error("api_error"), ProviderUnavailable),
    (502, "<html>bad gateway</html>", ProviderUnavailable),
    (429, stripe_error("rate_limit_error"), ProviderUnavailable),
    (409, stripe_error("idempotency_error", code="idempotency_key_in_use"), ProviderUnavailable),
    (302, "", ProviderUnavailable),
    (200, "not json", ProviderUnavailable),
    (401, stripe_error("invalid_request_error"), ProviderAuthFailed),
    (403, "", ProviderAuthFailed),
    (404, stripe_error("invalid_request_error", code="resource_missing"), ProviderNotFound),
    (400, stripe_error("idempotency_error"), ProviderIdempotencyMismatch),
    (400, stripe_error("invalid_request_error", code="parameter_missing"), ProviderRejected),
    (402, "payment required", ProviderRejected),
])
def test_status_mapping(status: int, body: str, expected: type[ProviderError]) -> None:
    with pytest.raises(ProviderError) as caught:
        _answer("POST /v1/payouts", status, body)
    assert type(caught.value) is expected


def test_rejection_keeps_the_provider_code_and_our_code() -> None:
    with pytest.raises(ProviderRejected) as caught:
        _answer("POST /v1/payouts", 400, stripe_error("invalid_request_error", "Amount too small", "amount_too_small"))
    assert caught.value.provider_code == "amount_too_small" and caught.value.provider_message == "Amount too small"
    assert caught.value.code == "PROVIDER_REJECTED"


def test_payout_parsing() -> None:
    wire = {"id": "po_1", "object": "payout", "amount": 5, "currency": "eur", "destination": "ba_1",
            "status": "in_transit", "metadata": {"payout_id": "p1"}, "failure_code": None, "created": 7}
    payout = payout_from_wire(wire)
    assert (payout.currency, payout.status, payout.payout_id, payout.created) == ("EUR", "in_transit", "p1", 7)
    broken: object
    for broken in ({**wire, "status": "lost"}, {**wire, "amount": "5"}, {**wire, "amount": True},
                   {k: v for k, v in wire.items() if k != "id"}, [], None):
        with pytest.raises(ProviderUnavailable):
            payout_from_wire(broken)
