"""A small inverted index over titles and authors, ranked by tf-idf."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

from shelf.records import Book

STOPWORDS = frozenset({"a", "an", "and", "of", "on", "the", "to", "in", "for", "with"})
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case words without stopwords, a plural `s` stripped."""
    words = []
    for w in _WORD.findall(text.lower()):
        if w in STOPWORDS:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        words.append(w)
    return words


class Index:
    def __init__(self) -> None:
        self.postings: dict[str, dict[str, int]] = defaultdict(dict)
        self.books: dict[str, Book] = {}

    def add(self, book: Book) -> None:
        self.books[book.isbn] = book
        terms = Counter(tokenize(book.title + " " + " ".join(book.authors)))
        for term, n in terms.items():
            self.postings[term][book.isbn] = n

    def __len__(self) -> int:
        return len(self.books)

    def search(self, query: str, limit: int = 10) -> list[str]:
        """The ISBNs that match every word of the query, best first (ties by ISBN)."""
        terms = tokenize(query)
        if not terms:
            return []
        hits = set.intersection(*(set(self.postings.get(t, {})) for t in terms))
        scores = {}
        for isbn in hits:
            scores[isbn] = sum(
                self.postings[t][isbn] * math.log(1 + len(self.books) / len(self.postings[t]))
                for t in terms
            )
        return sorted(scores, key=lambda i: (-scores[i], i))[:limit]
