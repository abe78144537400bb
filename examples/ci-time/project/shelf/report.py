"""Summaries of a catalogue: books per decade, most frequent authors, a text table."""

from __future__ import annotations

from collections import Counter

from shelf.records import Book
from shelf.store import Store


def by_decade(books: list[Book]) -> dict[int, int]:
    counts = Counter(b.year // 10 * 10 for b in books)
    return dict(sorted(counts.items()))


def top_authors(books: list[Book], n: int = 3) -> list[tuple[str, int]]:
    counts = Counter(a for b in books for a in b.authors)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def render(books: list[Book], width: int = 40) -> str:
    """A fixed-width table: year, title (cut to `width`), first author; oldest first."""
    lines = [f"{'year':<6}{'title':<{width}}  author"]
    for b in sorted(books, key=lambda b: (b.year, b.title)):
        title = b.title if len(b.title) <= width else b.title[: width - 1] + "…"
        lines.append(f"{b.year:<6}{title:<{width}}  {b.authors[0] if b.authors else '-'}")
    return "\n".join(lines) + "\n"


def report(store: Store, isbns: list[str]) -> str:
    """The table and the decade counts of the books the store holds among `isbns`."""
    books = list(store.get_many(isbns).values())
    decades = ", ".join(f"{d}s: {n}" for d, n in by_decade(books).items())
    return render(books) + f"{len(books)} books ({decades or 'none'})\n"
