"""Money arrives as numbers, strings or Shopify MoneyV2 objects; it is kept as Decimal."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


def to_decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dict):
        return to_decimal(value.get("amount"))
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def currency_of(money: Any) -> str | None:
    if isinstance(money, dict):
        code = money.get("currencyCode")
        return code.upper() if isinstance(code, str) and code else None
    return None
