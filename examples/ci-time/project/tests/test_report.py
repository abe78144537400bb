import unittest

from shelf.isbn import check_digit_13
from shelf.records import Book
from shelf.report import by_decade, render, report, top_authors
from shelf.store import Remote, Store


def book(n: int, year: int, *authors: str, title: str = "") -> Book:
    body = f"978{n:09d}"
    return Book(body + check_digit_13(body), title or f"Book {n}", authors or ("Anon",), year)


BOOKS = [
    book(1, 1923, "Woolf"),
    book(2, 1927, "Woolf"),
    book(3, 1961, "Heller", "Vonnegut"),
    book(4, 1969, "Vonnegut"),
    book(5, 2001, "Sebald"),
]


class ReportTest(unittest.TestCase):
    def test_by_decade(self) -> None:
        self.assertEqual(by_decade(BOOKS), {1920: 2, 1960: 2, 2000: 1})

    def test_top_authors_breaks_ties_by_name(self) -> None:
        self.assertEqual(top_authors(BOOKS, 2), [("Vonnegut", 2), ("Woolf", 2)])

    def test_render_cuts_long_titles(self) -> None:
        long = book(9, 1950, title="A Title Much Longer Than The Column Is Wide")
        table = render([long], width=20)
        self.assertIn("A Title Much Longer…", table)
        self.assertEqual(len(table.splitlines()), 2)

    def test_render_orders_by_year(self) -> None:
        rows = render(list(reversed(BOOKS))).splitlines()[1:]
        self.assertEqual([r[:4] for r in rows], ["1923", "1927", "1961", "1969", "2001"])

    def test_report_reads_the_store(self) -> None:
        remote = Remote(latency_s=0.1)
        store = Store(remote)
        for b in BOOKS:
            store.put(b)
        store.invalidate()
        text = report(store, [b.isbn for b in BOOKS] + [book(77, 1900).isbn])
        self.assertTrue(text.endswith("5 books (1920s: 2, 1960s: 2, 2000s: 1)\n"))
        self.assertEqual(remote.calls, len(BOOKS) + 1)

    def test_report_of_nothing(self) -> None:
        remote = Remote(latency_s=0.1)
        self.assertTrue(report(Store(remote), [book(1, 1900).isbn]).endswith("0 books (none)\n"))


if __name__ == "__main__":
    unittest.main()
