"""Money as Decimal from numbers, strings and Shopify MoneyV2 objects."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recapture.domain.money import currency_of, to_decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (25, Decimal("25")),
        (25.0, Decimal("25.0")),
        (0.1, Decimal("0.1")),
        (19.99, Decimal("19.99")),
        ("409.94", Decimal("409.94")),
        (" 3.50 ", Decimal("3.50")),
        ("0.00", Decimal("0.00")),
        ({"amount": 55.0, "currencyCode": "USD"}, Decimal("55.0")),
        ({"amount": "12.30", "currencyCode": "EUR"}, Decimal("12.30")),
    ],
)
def test_to_decimal_reads_numbers_strings_and_money(value: object, expected: Decimal) -> None:
    """Numbers, numeric strings and MoneyV2 become exact Decimals (floats by their shortest repr)."""
    result = to_decimal(value)
    assert isinstance(result, Decimal)
    assert result == expected
    assert str(result) == str(expected)


@pytest.mark.parametrize(
    "value", [None, True, False, "", "abc", "NaN", "sNaN", "Infinity", "-inf", float("nan"), float("inf"), {}, [], {"amount": None}]
)
def test_to_decimal_rejects_non_amounts(value: object) -> None:
    """Missing, boolean, non-numeric and non-finite values give None."""
    assert to_decimal(value) is None


@pytest.mark.parametrize(
    ("money", "expected"),
    [({"amount": 1, "currencyCode": "usd"}, "USD"), ({"amount": 1, "currencyCode": "EUR"}, "EUR"),
     ({"amount": 1}, None), ({"currencyCode": ""}, None), ({"currencyCode": 5}, None), ("USD", None), (None, None)],
)
def test_currency_of_money(money: object, expected: str | None) -> None:
    """The currency code of a MoneyV2 object, upper-cased; None otherwise."""
    assert currency_of(money) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                 st.dictionaries(st.sampled_from(["amount", "currencyCode"]), st.text(max_size=10) | st.floats())))
def test_to_decimal_never_raises_and_is_finite(value: object) -> None:
    """Any input gives None or a finite Decimal."""
    result = to_decimal(value)
    assert result is None or result.is_finite()
