"""The cache's tests (trusted, read-only). `test_get_after_load` is the flaky one."""

import time

from cache import Cache


def test_get_after_load() -> None:
    c = Cache()
    c.load_async()
    time.sleep(0.002)  # "long enough" for the load, the author assumed
    assert c.get("a") == 1


def test_missing_key() -> None:
    c = Cache()
    c.load_async()
    assert c.get("zzz") is None


def test_keys() -> None:
    c = Cache()
    c.load_async()
    time.sleep(0.01)
    assert c.keys() == ["a", "b", "c"]
