"""actual_cost_usd: billable seconds x instances x billing price / 3600."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regional_training.plan.placement import actual_cost_usd


def test_examples() -> None:
    assert actual_cost_usd(3600, Decimal("37.6885"), 2) == Decimal("75.38")
    assert actual_cost_usd(1800, "7.09") == Decimal("3.55")  # 3.545 rounds half up
    assert actual_cost_usd(1800, "7.09", quantum=None) == Decimal("3.545")
    assert actual_cost_usd(12345, 0, 4) == Decimal("0.00")  # prepaid reservation
    assert actual_cost_usd(None, "1") is None
    assert actual_cost_usd(100, None) is None


@pytest.mark.parametrize("args", [(-1, 1, 1), (1, -1, 1), (1, 1, 0)])
def test_refuses_nonsense(args) -> None:
    with pytest.raises(ValueError):
        actual_cost_usd(*args)


@given(seconds=st.integers(0, 10**7), cents=st.integers(0, 20_000_000), count=st.integers(1, 64))
def test_rounds_the_exact_value_half_up_to_cents(seconds: int, cents: int, count: int) -> None:
    price = Decimal(cents) / 10_000
    true_value = Fraction(seconds * count) * Fraction(price) / 3600
    assert actual_cost_usd(seconds, price, count) == Decimal(floor(true_value * 100 + Fraction(1, 2))) / 100
    unrounded = actual_cost_usd(seconds, price, count, quantum=None)
    assert abs(Fraction(unrounded) - true_value) <= Fraction(1, 10**18) * max(1, true_value)
    assert actual_cost_usd(seconds + 1, price, count, quantum=None) >= unrounded
