"""The pricing rules, pinned down (trusted, read-only)."""

import pytest
from pricing import price


@pytest.mark.parametrize(
    ("kind", "quantity", "member", "unit"),
    [("book", 10, True, 8.0), ("book", 10, False, 9.0), ("book", 3, True, 9.0), ("book", 3, False, 10.0),
     ("pen", 12, True, 1.6), ("pen", 12, False, 1.8), ("pen", 1, True, 1.8), ("pen", 1, False, 2.0)],
)  # fmt: skip
def test_unit_prices(kind, quantity, member, unit):
    assert price(kind, quantity, member, None) == round(unit * quantity, 2)


def test_coupons():
    assert price("book", 3, False, "TEN") == 27.0
    assert price("book", 3, False, "HALF") == 15.0
    assert price("book", 20, False, "HALF") == 130.0  # over 100: 50 off, not half


def test_unknown_things_are_errors():
    with pytest.raises(ValueError):
        price("lamp", 1, False, None)
    with pytest.raises(ValueError):
        price("pen", 1, False, "FREE")
