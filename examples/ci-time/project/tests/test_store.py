import unittest

from shelf.isbn import check_digit_13
from shelf.records import Book
from shelf.store import BATCH, Remote, Store

LATENCY_S = 0.05  # one hop to the catalogue service


def book(n: int) -> Book:
    body = f"978{n:09d}"
    return Book(body + check_digit_13(body), f"Volume {n}", ("A. Writer",), 2000)


def seeded(count: int, latency_s: float = LATENCY_S) -> Remote:
    """A remote that already holds `count` books (set up without a hop each)."""
    remote = Remote(latency_s)
    for n in range(count):
        remote.rows[book(n).isbn] = book(n)
    return remote


class StoreTest(unittest.TestCase):
    def test_put_then_get_reads_the_cache(self) -> None:
        remote = Remote(LATENCY_S)
        store = Store(remote)
        store.put(book(1))
        self.assertEqual(store.get(book(1).isbn), book(1))
        self.assertEqual(remote.calls, 1)

    def test_a_missing_book_is_none_and_remembered(self) -> None:
        remote = seeded(0)
        store = Store(remote)
        self.assertIsNone(store.get(book(5).isbn))
        self.assertIsNone(store.get(book(5).isbn))
        self.assertEqual(remote.calls, 1)

    def test_get_many_fetches_in_batches(self) -> None:
        remote = seeded(25)
        found = Store(remote).get_many(book(n).isbn for n in range(25))
        self.assertEqual(len(found), 25)
        self.assertEqual(remote.calls, -(-25 // BATCH))

    def test_get_many_skips_duplicates_and_cached_books(self) -> None:
        remote = seeded(12)
        store = Store(remote)
        store.get(book(0).isbn)
        wanted = [book(n).isbn for n in (0, 1, 1, 2, 99)]
        self.assertEqual(list(store.get_many(wanted)), [book(n).isbn for n in (0, 1, 2)])
        self.assertEqual(remote.calls, 2)

    def test_invalidate_one_book(self) -> None:
        remote = seeded(3)
        store = Store(remote)
        store.get(book(1).isbn)
        store.invalidate(book(1).isbn)
        store.invalidate(book(2).isbn)  # not cached: nothing to forget
        store.get(book(1).isbn)
        self.assertEqual(remote.calls, 2)

    def test_invalidate_everything(self) -> None:
        remote = seeded(3)
        store = Store(remote)
        store.get_many([book(0).isbn, book(1).isbn])
        store.invalidate()
        self.assertEqual(store.cache, {})
        store.get(book(0).isbn)
        self.assertEqual(remote.calls, 2)

    def test_a_slow_backend_still_answers(self) -> None:
        remote = seeded(30, latency_s=0.12)
        store = Store(remote)
        found = store.get_many(book(n).isbn for n in range(30))
        self.assertEqual(sorted(found), sorted(book(n).isbn for n in range(30)))
        self.assertEqual(store.get(book(7).isbn), book(7))
        self.assertEqual(remote.calls, 3)


if __name__ == "__main__":
    unittest.main()
