"""Webhook signatures: ours are what Stripe's own library accepts, and `verify` refuses everything else."""

from __future__ import annotations

import json

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from periodya.errors import ConfigError, PeriodyaError
from periodya.provider.signing import SignatureError, compute_signature, sign, verify

SECRET = "whsec_test_secret"
NOW = 1_700_000_000
BODY = json.dumps({"id": "evt_1", "object": "event", "type": "payout.paid",
                   "data": {"object": {"id": "po_1", "object": "payout", "status": "paid"}}}).encode()


def reason(payload: bytes, header: str, secrets: list[str], now: int = NOW) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(payload, header, secrets, now)
    assert isinstance(caught.value, PeriodyaError)
    return caught.value.reason


def test_header_shape() -> None:
    header = sign(BODY, SECRET, NOW)
    assert header == f"t={NOW},v1={compute_signature(BODY, SECRET, NOW)}"
    assert len(header.split("v1=")[1]) == 64


def test_the_official_stripe_library_accepts_our_signature() -> None:
    import time

    now = int(time.time())
    header = sign(BODY, SECRET, now)
    assert stripe.WebhookSignature.verify_header(BODY, header, SECRET, tolerance=300) is True
    event = stripe.Webhook.construct_event(BODY, header, SECRET)
    assert event["id"] == "evt_1" and event["type"] == "payout.paid"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(BODY, header, "whsec_other", tolerance=300)


def test_we_accept_the_official_stripe_library_signature() -> None:
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, timestamp=NOW)
    verify(BODY, header, [SECRET], NOW)


def test_accepts_own_signature_within_tolerance_either_way() -> None:
    header = sign(BODY, SECRET, NOW)
    for now in (NOW, NOW + 300, NOW - 300):
        verify(BODY, header, [SECRET], now)


def test_wrong_secret() -> None:
    assert reason(BODY, sign(BODY, "whsec_wrong", NOW), [SECRET]) == "no_matching_signature"


def test_changed_body() -> None:
    header = sign(BODY, SECRET, NOW)
    assert reason(BODY.replace(b"paid", b"fail"), header, [SECRET]) == "no_matching_signature"
    assert reason(BODY + b" ", header, [SECRET]) == "no_matching_signature"


def test_changed_timestamp_breaks_the_signature() -> None:
    signature = compute_signature(BODY, SECRET, NOW)
    assert reason(BODY, f"t={NOW + 1},v1={signature}", [SECRET]) == "no_matching_signature"


def test_stale_timestamp() -> None:
    header = sign(BODY, SECRET, NOW - 301)
    assert reason(BODY, header, [SECRET]) == "timestamp_too_old"


def test_future_timestamp() -> None:
    header = sign(BODY, SECRET, NOW + 301)
    assert reason(BODY, header, [SECRET]) == "timestamp_in_future"


@pytest.mark.parametrize("header", [
    "", "garbage", "t=,v1=abc", f"v1={'0' * 64}", f"t=abc,v1={'0' * 64}", f"t={NOW},t={NOW},v1=00",
    f"t=-{NOW},v1=00", f"t={NOW};v1=00", "t=١٢٣,v1=00", "x" * 5000,
])
def test_malformed_header(header: str) -> None:
    assert reason(BODY, header, [SECRET]) == "malformed_header"


def test_no_v1_signature() -> None:
    v0 = compute_signature(BODY, SECRET, NOW)
    assert reason(BODY, f"t={NOW},v0={v0}", [SECRET]) == "no_v1_signature"


def test_rotation_one_of_two_v1_values_matches() -> None:
    good = compute_signature(BODY, SECRET, NOW)
    old = compute_signature(BODY, "whsec_old", NOW)
    verify(BODY, f"t={NOW},v1={old},v1={good}", [SECRET], NOW)
    verify(BODY, f"t={NOW}, v1={good}, v1={old}, v0=ignored", [SECRET], NOW)
    assert reason(BODY, f"t={NOW},v1={old},v1={'f' * 64}", [SECRET]) == "no_matching_signature"


def test_rotation_one_of_two_configured_secrets_matches() -> None:
    for secret in ("whsec_new", "whsec_old"):
        verify(BODY, sign(BODY, secret, NOW), ["whsec_new", "whsec_old"], NOW)
    assert reason(BODY, sign(BODY, "whsec_gone", NOW), ["whsec_new", "whsec_old"]) == "no_matching_signature"


def test_non_ascii_signature_is_refused_not_crashed() -> None:
    assert reason(BODY, f"t={NOW},v1=é{'0' * 63}", [SECRET]) == "no_matching_signature"


def test_no_secret_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        verify(BODY, sign(BODY, SECRET, NOW), [], NOW)
    with pytest.raises(ConfigError):
        verify(BODY, sign(BODY, SECRET, NOW), [""], NOW)


@given(payload=st.binary(max_size=256), secret=st.text(min_size=1, max_size=40), skew=st.integers(-300, 300))
def test_sign_then_verify_round_trips(payload: bytes, secret: str, skew: int) -> None:
    verify(payload, sign(payload, secret, NOW), [secret], NOW + skew)


def message(payload: bytes, header: str, secrets: list[str], now: int = NOW) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(payload, header, secrets, now)
    return str(caught.value)


def test_each_refusal_says_why() -> None:
    """The detail reaches the operator (log, problem body): each reason has its own, with the numbers."""
    prefix = "webhook signature rejected: "
    assert message(BODY, "", [SECRET]) == prefix + "the Stripe-Signature header is missing or too long"
    assert message(BODY, "garbage", [SECRET]) == prefix + "the Stripe-Signature header is not a list of key=value"
    assert message(BODY, f"t=x,v1={'0' * 64}", [SECRET]) == (
        prefix + "the Stripe-Signature header needs exactly one numeric t=")
    assert message(BODY, f"t={NOW}", [SECRET]) == prefix + "the Stripe-Signature header has no v1= signature"
    assert message(BODY, sign(BODY, SECRET, NOW - 301), [SECRET]) == (
        prefix + "timestamp is 301 s old (tolerance 300 s)")
    assert message(BODY, sign(BODY, SECRET, NOW + 302), [SECRET]) == (
        prefix + "timestamp is 302 s in the future (tolerance 300 s)")
    assert message(BODY, sign(BODY, "whsec_wrong", NOW), [SECRET]) == (
        prefix + "no v1 signature matches the payload under any configured secret")
    with pytest.raises(ConfigError, match=r"^no webhook secret is configured \(PERIODYA_WEBHOOK_SECRET\)$"):
        verify(BODY, sign(BODY, SECRET, NOW), [], NOW)


def test_header_length_limit_is_4096() -> None:
    header = sign(BODY, SECRET, NOW)
    padded = header + ",v0=" + "x" * (4096 - len(header) - 4)
    assert len(padded) == 4096
    verify(BODY, padded, [SECRET], NOW)  # exactly at the limit: accepted
    assert reason(BODY, padded + "x", [SECRET]) == "malformed_header"


@pytest.mark.parametrize("item", ["=v", "=", "k=", "novalue"])
def test_every_item_needs_a_key_and_a_value(item: str) -> None:
    good = compute_signature(BODY, SECRET, NOW)
    assert reason(BODY, f"t={NOW},{item},v1={good}", [SECRET]) == "malformed_header"


def test_a_value_may_contain_equals_signs() -> None:
    """key=value splits at the first '=': a v1 value with '=' in it is a (wrong) signature, not a key."""
    good = compute_signature(BODY, SECRET, NOW)
    assert reason(BODY, f"t={NOW},v1={good}=", [SECRET]) == "no_matching_signature"
    verify(BODY, f"t={NOW},v0=a=b,v1={good}", [SECRET], NOW)
