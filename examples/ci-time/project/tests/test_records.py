import unittest

from shelf.records import Book, RecordError, dump, parse, parse_line

CATALOGUE = """\
# the reading room
0-306-40615-2; Signals and Systems; A. Oppenheim & A. Willsky; 1983

978-0-8044-2957-3; Tales of the Sea; R. Stone; 1921
"""


class RecordsTest(unittest.TestCase):
    def test_parse_line(self) -> None:
        book = parse_line("0-306-40615-2; Signals; A. Oppenheim & A. Willsky; 1983")
        authors = ("A. Oppenheim", "A. Willsky")
        self.assertEqual(book, Book("9780306406157", "Signals", authors, 1983))

    def test_parse_skips_comments_and_blank_lines(self) -> None:
        books = parse(CATALOGUE)
        self.assertEqual([b.year for b in books], [1983, 1921])

    def test_wrong_number_of_fields(self) -> None:
        with self.assertRaisesRegex(RecordError, "line 3: expected 4 fields"):
            parse_line("0306406152; Signals; 1983", 3)

    def test_bad_isbn_names_the_line(self) -> None:
        with self.assertRaisesRegex(RecordError, "line 2: not an ISBN"):
            parse("# x\n0306406153; Signals; A. O; 1983\n")

    def test_empty_title_and_bad_year(self) -> None:
        with self.assertRaisesRegex(RecordError, "empty title"):
            parse_line("0306406152; ; A. O; 1983")
        with self.assertRaisesRegex(RecordError, "bad year"):
            parse_line("0306406152; Signals; A. O; 19x3")
        with self.assertRaisesRegex(RecordError, "bad year"):
            parse_line("0306406152; Signals; A. O; 1200")

    def test_dump_then_parse_is_the_same(self) -> None:
        books = parse(CATALOGUE)
        self.assertEqual(parse(dump(books)), books)

    def test_a_book_without_authors(self) -> None:
        self.assertEqual(parse_line("0306406152; Anonymous Verse; ; 1900").authors, ())


if __name__ == "__main__":
    unittest.main()
