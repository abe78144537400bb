"""Catalogue records: one book per line, `isbn; title; author & author; year`."""

from __future__ import annotations

from dataclasses import dataclass

from shelf.isbn import IsbnError, to_isbn13


class RecordError(ValueError):
    """A line that is not a valid record; says which line and why."""


@dataclass(frozen=True)
class Book:
    isbn: str
    """Always the normalised ISBN-13."""
    title: str
    authors: tuple[str, ...]
    year: int


def parse_line(line: str, number: int = 1) -> Book:
    fields = [f.strip() for f in line.split(";")]
    if len(fields) != 4:
        raise RecordError(f"line {number}: expected 4 fields, got {len(fields)}")
    isbn, title, authors, year = fields
    try:
        isbn = to_isbn13(isbn)
    except IsbnError as e:
        raise RecordError(f"line {number}: {e}") from None
    if not title:
        raise RecordError(f"line {number}: empty title")
    if not year.isdigit() or not 1450 <= int(year) <= 2100:
        raise RecordError(f"line {number}: bad year {year!r}")
    names = tuple(a.strip() for a in authors.split("&") if a.strip())
    return Book(isbn, title, names, int(year))


def parse(text: str) -> list[Book]:
    """Every record of a catalogue; blank lines and `#` comments are skipped."""
    books = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            books.append(parse_line(line, number))
    return books


def dump(books: list[Book]) -> str:
    return "".join(f"{b.isbn}; {b.title}; {' & '.join(b.authors)}; {b.year}\n" for b in books)
