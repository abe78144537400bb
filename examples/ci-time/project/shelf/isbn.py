"""ISBN-10 and ISBN-13: normalising, check digits, validation and conversion."""

from __future__ import annotations


class IsbnError(ValueError):
    """Not an ISBN, or one that cannot be converted as asked."""


def normalize(text: str) -> str:
    """The digits (and a final X) of an ISBN written with hyphens or spaces."""
    return "".join(c for c in text if c not in "- ").upper()


def check_digit_10(first9: str) -> str:
    total = sum((10 - i) * int(d) for i, d in enumerate(first9))
    digit = (11 - total % 11) % 11
    return "X" if digit == 10 else str(digit)


def check_digit_13(first12: str) -> str:
    total = sum((3 if i % 2 else 1) * int(d) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def is_valid_isbn10(text: str) -> bool:
    s = normalize(text)
    if len(s) != 10 or not s[:9].isdigit() or not (s[9].isdigit() or s[9] == "X"):
        return False
    return check_digit_10(s[:9]) == s[9]


def is_valid_isbn13(text: str) -> bool:
    s = normalize(text)
    if len(s) != 13 or not s.isdigit() or s[:3] not in ("978", "979"):
        return False
    return check_digit_13(s[:12]) == s[12]


def is_valid(text: str) -> bool:
    return is_valid_isbn10(text) or is_valid_isbn13(text)


def to_isbn13(text: str) -> str:
    """The ISBN-13 of an ISBN-10 (an ISBN-13 is returned as it is, normalised)."""
    s = normalize(text)
    if is_valid_isbn13(s):
        return s
    if not is_valid_isbn10(s):
        raise IsbnError(f"not an ISBN: {text!r}")
    body = "978" + s[:9]
    return body + check_digit_13(body)


def to_isbn10(text: str) -> str:
    """The ISBN-10 of a 978- ISBN-13; 979- numbers have none."""
    s = normalize(text)
    if is_valid_isbn10(s):
        return s
    if not is_valid_isbn13(s):
        raise IsbnError(f"not an ISBN: {text!r}")
    if not s.startswith("978"):
        raise IsbnError(f"{text!r} has no ISBN-10 (979 prefix)")
    return s[3:12] + check_digit_10(s[3:12])
