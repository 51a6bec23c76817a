"""Money helpers: Decimal only, rounded half-up to the currency's minor unit."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 minor units for the currencies merchants actually check out in; anything not listed is refused
# rather than guessed, because a wrong exponent silently mis-rounds every line.
MINOR_UNITS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "NZD": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2,
    "PLN": 2, "CZK": 2, "HUF": 2, "RON": 2, "BGN": 2, "MXN": 2, "BRL": 2, "INR": 2, "SGD": 2, "HKD": 2,
    "ZAR": 2, "CNY": 2, "ILS": 2, "TRY": 2, "JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0,
    "BHD": 3, "JOD": 3, "KWD": 3, "OMR": 3, "TND": 3,
}

ZERO = Decimal("0")


_QUANTA = {code: Decimal(1).scaleb(-digits) for code, digits in MINOR_UNITS.items()}


def minor_unit(currency: str) -> Decimal:
    """The currency's smallest unit as a quantum: 0.01 for USD, 1 for JPY, 0.001 for KWD."""
    return _QUANTA[currency.upper()]


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(_QUANTA[currency], rounding=ROUND_HALF_UP)


def to_decimal(value: object) -> Decimal:
    """Parse a rate or amount from text or an int; floats are refused so binary fractions never creep in."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        raise TypeError("floats are not accepted for money or rates; pass a str or Decimal")
    try:
        return Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal number: {value!r}") from exc


def percent_to_rate(value: object) -> Decimal:
    """19.0 (percent, as text) -> Decimal('0.19')."""
    return (to_decimal(value) / 100).normalize()
