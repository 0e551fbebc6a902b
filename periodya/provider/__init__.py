"""The payout provider: the port, the Stripe-protocol adapter, webhook signatures and the simulator.

Import the simulator from `periodya.provider.simulator`; it is not needed by the service itself.
"""

from periodya.provider.port import (
    PayoutProvider,
    ProviderAuthFailed,
    ProviderError,
    ProviderIdempotencyMismatch,
    ProviderNotFound,
    ProviderPayout,
    ProviderRejected,
    ProviderUnavailable,
)
from periodya.provider.signing import SignatureError, sign, verify
from periodya.provider.stripe_adapter import StripePayoutsClient

__all__ = [
    "PayoutProvider",
    "ProviderAuthFailed",
    "ProviderError",
    "ProviderIdempotencyMismatch",
    "ProviderNotFound",
    "ProviderPayout",
    "ProviderRejected",
    "ProviderUnavailable",
    "SignatureError",
    "StripePayoutsClient",
    "sign",
    "verify",
]
