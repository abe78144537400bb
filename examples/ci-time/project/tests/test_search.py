import unittest

from shelf.isbn import check_digit_13
from shelf.records import Book
from shelf.search import Index, tokenize

WORDS = ["river", "stone", "garden", "night", "winter", "harbour", "letters", "glass", "orchard"]


def book(n: int, title: str, *authors: str) -> Book:
    body = f"978{n:09d}"
    return Book(body + check_digit_13(body), title, authors, 1900 + n % 120)


def library(size: int) -> Index:
    """A large generated catalogue: titles drawn from WORDS without randomness."""
    index = Index()
    for n in range(size):
        title = " ".join(WORDS[(n * k) % len(WORDS)] for k in (1, 3, 7))
        index.add(book(n, f"The {title}", f"Author {n % 97}"))
    return index


class SearchTest(unittest.TestCase):
    def test_tokenize_drops_stopwords_and_plurals(self) -> None:
        self.assertEqual(tokenize("The Letters of a Glass Harbour"), ["letter", "glass", "harbour"])
        self.assertEqual(tokenize("Chess"), ["chess"])

    def test_tokenize_nothing(self) -> None:
        self.assertEqual(tokenize("the and of"), [])

    def test_every_word_must_match(self) -> None:
        index = Index()
        index.add(book(1, "River Stone"))
        index.add(book(2, "River Garden"))
        self.assertEqual(index.search("river stone"), [book(1, "").isbn])
        self.assertEqual(index.search("winter"), [])

    def test_more_occurrences_rank_first(self) -> None:
        index = Index()
        index.add(book(1, "Night Garden"))
        index.add(book(2, "Night after Night"))
        self.assertEqual(index.search("night")[0], book(2, "").isbn)

    def test_authors_are_searched(self) -> None:
        index = Index()
        index.add(book(1, "Glass", "Mary Orchard"))
        self.assertEqual(index.search("orchard"), [book(1, "").isbn])

    def test_empty_query(self) -> None:
        self.assertEqual(library(10).search("the"), [])

    def test_a_large_catalogue(self) -> None:
        index = library(4000)
        self.assertEqual(len(index), 4000)
        hits = index.search("nights", limit=50)
        self.assertEqual(len(hits), 50)
        self.assertEqual(hits, index.search("night", limit=4000)[:50])
        for isbn in hits:  # the titles that say it twice rank first
            self.assertEqual(tokenize(index.books[isbn].title).count("night"), 2)


if __name__ == "__main__":
    unittest.main()
