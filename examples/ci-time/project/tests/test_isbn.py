import unittest

from shelf import isbn


class IsbnTest(unittest.TestCase):
    def test_normalize_drops_hyphens_and_spaces(self) -> None:
        self.assertEqual(isbn.normalize("0-306-40615 2"), "0306406152")
        self.assertEqual(isbn.normalize("0-8044-2957-x"), "080442957X")

    def test_valid_isbn10(self) -> None:
        self.assertTrue(isbn.is_valid_isbn10("0-306-40615-2"))
        self.assertTrue(isbn.is_valid_isbn10("0-8044-2957-X"))
        self.assertFalse(isbn.is_valid_isbn10("0-306-40615-3"))
        self.assertFalse(isbn.is_valid_isbn10("03064061"))

    def test_valid_isbn13(self) -> None:
        self.assertTrue(isbn.is_valid_isbn13("978-0-306-40615-7"))
        self.assertFalse(isbn.is_valid_isbn13("978-0-306-40615-8"))
        self.assertFalse(isbn.is_valid_isbn13("977-0-306-40615-7"))

    def test_is_valid_takes_either(self) -> None:
        self.assertTrue(isbn.is_valid("0306406152"))
        self.assertTrue(isbn.is_valid("9780306406157"))
        self.assertFalse(isbn.is_valid("hello"))

    def test_to_isbn13(self) -> None:
        self.assertEqual(isbn.to_isbn13("0-306-40615-2"), "9780306406157")
        self.assertEqual(isbn.to_isbn13("978-0-306-40615-7"), "9780306406157")
        with self.assertRaises(isbn.IsbnError):
            isbn.to_isbn13("0-306-40615-3")

    def test_to_isbn10(self) -> None:
        self.assertEqual(isbn.to_isbn10("9780306406157"), "0306406152")
        self.assertEqual(isbn.to_isbn10("080442957X"), "080442957X")
        with self.assertRaises(isbn.IsbnError):
            isbn.to_isbn10("9791234567896")
        with self.assertRaises(isbn.IsbnError):
            isbn.to_isbn10("12345")

    def test_round_trip_over_many_numbers(self) -> None:
        for n in range(0, 10**9, 7_654_321):
            body = f"{n:09d}"
            ten = body + isbn.check_digit_10(body)
            self.assertEqual(isbn.to_isbn10(isbn.to_isbn13(ten)), ten)


if __name__ == "__main__":
    unittest.main()
