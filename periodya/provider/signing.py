"""Webhook signatures in the Stripe-Signature scheme: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

Pure: no I/O and no clock; the caller passes `now`. `verify` runs on the raw request body before
anything is parsed or stored. Several `v1` values (the provider signing with old and new secret) and
several configured secrets (ours, during rotation) are accepted; every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from periodya.errors import ConfigError, PeriodyaError

SCHEME = "v1"
DEFAULT_TOLERANCE = 300
"""Seconds a signature's timestamp may differ from `now`, either way, before it is refused."""
_MAX_HEADER = 4096


class SignatureError(PeriodyaError):
    """A webhook's signature does not prove it came from the provider; nothing may be stored.

    `reason` is one of: malformed_header, no_v1_signature, timestamp_too_old, timestamp_in_future,
    no_matching_signature.
    """

    code = "INVALID_SIGNATURE"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"webhook signature rejected: {detail}")
        self.reason = reason


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of `"<timestamp>.<payload>"` keyed by `secret`."""
    signed = str(timestamp).encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The Stripe-Signature header value for `payload` signed with `secret` at `timestamp` (unix seconds)."""
    return f"t={timestamp},{SCHEME}={compute_signature(payload, secret, timestamp)}"


def parse_header(header: str) -> tuple[int, list[str]]:
    """`(timestamp, v1 signatures)` from a Stripe-Signature header. Other schemes (v0...) are ignored."""
    if not header or len(header) > _MAX_HEADER:
        raise SignatureError("malformed_header", "the Stripe-Signature header is missing or too long")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key or not value:
            raise SignatureError("malformed_header", "the Stripe-Signature header is not a list of key=value")
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureError("malformed_header", "the Stripe-Signature header needs exactly one numeric t=")
    if not signatures:
        raise SignatureError("no_v1_signature", f"the Stripe-Signature header has no {SCHEME}= signature")
    return int(timestamps[0]), signatures


def verify(payload: bytes, header: str, secrets: Sequence[str], now: int,
           tolerance: int = DEFAULT_TOLERANCE) -> None:
    """Return if any `v1` in `header` is the signature of `payload` under any of `secrets`, made within
    `tolerance` seconds of `now` (too old and too far in the future are both refused); else raise
    `SignatureError`. An empty list of secrets is a `ConfigError`: refusing everything silently would
    look like an attack rather than a misconfiguration."""
    usable = [s for s in secrets if s]
    if not usable:
        raise ConfigError("no webhook secret is configured (PERIODYA_WEBHOOK_SECRET)")
    timestamp, signatures = parse_header(header)
    if now - timestamp > tolerance:
        raise SignatureError("timestamp_too_old", f"timestamp is {now - timestamp} s old (tolerance {tolerance} s)")
    if timestamp - now > tolerance:
        raise SignatureError("timestamp_in_future",
                             f"timestamp is {timestamp - now} s in the future (tolerance {tolerance} s)")
    candidates = [s.encode("utf-8", "surrogateescape") for s in signatures]  # any header bytes: never a crash
    matched = False
    for secret in usable:
        expected = compute_signature(payload, secret, timestamp).encode("ascii")
        for candidate in candidates:
            # No early exit: the time taken must not depend on which secret or which v1 matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no_matching_signature", "no v1 signature matches the payload under any configured secret")
