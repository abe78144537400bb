import dataclasses
import unittest

from shelf.isbn import check_digit_13
from shelf.records import Book
from shelf.store import Remote, Store
from shelf.sync import plan, sync

LATENCY_S = 0.05


def book(n: int, year: int = 1990) -> Book:
    body = f"978{n:09d}"
    return Book(body + check_digit_13(body), f"Title {n}", ("B. Author",), year)


class SyncTest(unittest.TestCase):
    def test_plan_against_an_empty_remote_adds_everything(self) -> None:
        todo = plan([book(1), book(2)], {})
        self.assertEqual((todo.add, todo.change, todo.same), ([book(1), book(2)], [], 0))

    def test_plan_sees_changes(self) -> None:
        old = book(1)
        remote = {old.isbn: old, book(2).isbn: book(2)}
        todo = plan([dataclasses.replace(old, year=1991), book(2)], remote)
        self.assertEqual(([b.year for b in todo.change], todo.same), ([1991], 1))

    def test_a_duplicate_isbn_is_refused(self) -> None:
        with self.assertRaisesRegex(ValueError, "twice"):
            plan([book(1), book(1, 2000)], {})

    def test_sync_pushes_new_and_changed_books(self) -> None:
        remote = Remote(LATENCY_S)
        remote.rows = {book(n).isbn: book(n) for n in range(10)}
        local = [book(n) for n in range(15)]
        local[3] = book(3, 2001)
        local[4] = book(4, 2002)
        todo = sync(local, Store(remote))
        self.assertEqual((len(todo.add), len(todo.change), todo.same), (5, 2, 8))
        self.assertEqual(remote.rows[book(3).isbn].year, 2001)
        self.assertEqual(remote.calls, 2 + 7)  # two batched reads, one write per book

    def test_a_second_sync_does_nothing(self) -> None:
        remote = Remote(LATENCY_S)
        store = Store(remote)
        local = [book(n) for n in range(3)]
        sync(local, store)
        calls = remote.calls
        todo = sync(local, store)
        self.assertEqual((todo.add, todo.change, todo.same), ([], [], 3))
        self.assertEqual(remote.calls, calls)


if __name__ == "__main__":
    unittest.main()
