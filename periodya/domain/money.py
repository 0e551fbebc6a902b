"""Money: integer minor units plus an ISO 4217 currency. Never float, never Decimal in storage."""

from __future__ import annotations

from dataclasses import dataclass

from periodya.domain.errors import ValidationFailed

# Active ISO 4217 codes whose minor-unit exponent is not 2; every other listed code has exponent 2.
_EXPONENT_0 = frozenset("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split())
_EXPONENT_3 = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
_EXPONENT_2 = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF
CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL
HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP
MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD
SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS
VES WST XCD YER ZAR ZMW ZWG""".split())
CURRENCIES = _EXPONENT_0 | _EXPONENT_2 | _EXPONENT_3


def exponent(currency: str) -> int:
    """Minor-unit exponent, for display only (amounts are always integer minor units)."""
    check_currency(currency)
    return 0 if currency in _EXPONENT_0 else 3 if currency in _EXPONENT_3 else 2


def check_currency(currency: str) -> str:
    if currency not in CURRENCIES:
        raise ValidationFailed(f"currency {currency!r} is not an active ISO 4217 code in upper case")
    return currency


def check_amount(amount: int, *, field: str = "amount", allow_zero: bool = False) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed(f"{field} must be an integer number of minor units")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ValidationFailed(f"{field} must be {'>= 0' if allow_zero else '> 0'}, got {amount}")
    if amount >= 2**62:
        raise ValidationFailed(f"{field} is too large")
    return amount


@dataclass(frozen=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        check_amount(self.amount, allow_zero=True)
        check_currency(self.currency)

    def display(self) -> str:
        exp = exponent(self.currency)
        if exp == 0:
            return f"{self.amount} {self.currency}"
        whole, frac = divmod(self.amount, 10**exp)
        return f"{whole}.{frac:0{exp}d} {self.currency}"
