"""The original pricing rules (trusted, read-only): what the candidate must still return."""


def price(kind, quantity, member, coupon):
    if kind == "book":
        if quantity >= 10:
            if member:
                unit = 8.0
            else:
                unit = 9.0
        else:
            if member:
                unit = 9.0
            else:
                unit = 10.0
    elif kind == "pen":
        if quantity >= 10:
            if member:
                unit = 1.6
            else:
                unit = 1.8
        else:
            if member:
                unit = 1.8
            else:
                unit = 2.0
    else:
        raise ValueError(f"unknown kind {kind}")
    total = unit * quantity
    if coupon == "HALF":
        if total > 100:
            total = total - 50
        else:
            total = total / 2
    elif coupon == "TEN":
        total = total * 0.9
    elif coupon is None:
        pass
    else:
        raise ValueError(f"unknown coupon {coupon}")
    return round(total, 2)
