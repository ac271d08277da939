"""Exact numbers from Binance's text: prices, quantities and volumes are decimal strings."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def non_negative_decimal(value: object, name: str,
                         error: type[ValueError] = ValueError) -> Decimal:
    """`value` as an exact Decimal; raises `error` naming `name` unless it is a finite number
    >= 0."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise error(f"{name} {value!r} is not a decimal number") from None
    if not number.is_finite() or number < 0:
        raise error(f"{name} {value!r} is not a non-negative decimal number")
    return number
