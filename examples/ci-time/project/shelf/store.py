"""A catalogue store over a remote backend: read-through cache, batched reads."""

from __future__ import annotations

import time
from collections.abc import Iterable

from shelf.records import Book

BATCH = 10
"""Most records one backend call fetches."""


class Remote:
    """A stand-in for the catalogue service: every call waits `latency_s`, as a network hop does."""

    def __init__(self, latency_s: float = 0.02) -> None:
        self.latency_s = latency_s
        self.rows: dict[str, Book] = {}
        self.calls = 0

    def fetch(self, isbns: list[str]) -> dict[str, Book]:
        self.calls += 1
        time.sleep(self.latency_s)
        return {i: self.rows[i] for i in isbns if i in self.rows}

    def save(self, book: Book) -> None:
        self.calls += 1
        time.sleep(self.latency_s)
        self.rows[book.isbn] = book


class Store:
    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self.cache: dict[str, Book | None] = {}

    def put(self, book: Book) -> None:
        self.remote.save(book)
        self.cache[book.isbn] = book

    def get(self, isbn: str) -> Book | None:
        if isbn not in self.cache:
            self.cache[isbn] = self.remote.fetch([isbn]).get(isbn)
        return self.cache[isbn]

    def get_many(self, isbns: Iterable[str]) -> dict[str, Book]:
        """The books found among `isbns`, fetching what is not cached in batches of BATCH."""
        wanted = list(dict.fromkeys(isbns))
        missing = [i for i in wanted if i not in self.cache]
        for start in range(0, len(missing), BATCH):
            chunk = missing[start : start + BATCH]
            found = self.remote.fetch(chunk)
            for isbn in chunk:
                self.cache[isbn] = found.get(isbn)
        return {i: b for i in wanted if (b := self.cache[i]) is not None}

    def invalidate(self, isbn: str | None = None) -> None:
        """Forget one cached record, or all of them."""
        if isbn is None:
            self.cache.clear()
        else:
            self.cache.pop(isbn, None)
