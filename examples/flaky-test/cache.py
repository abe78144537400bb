"""A cache that loads its data in the background. Its test fails now and then: find out why."""

import random
import threading
import time


class Cache:
    def __init__(self) -> None:
        self.data: dict[str, int] = {}

    def load_async(self) -> None:
        """Start loading; readers may call `get` right away."""

        def _load() -> None:
            time.sleep(random.uniform(0, 0.004))  # a slow backend
            self.data = {"a": 1, "b": 2, "c": 3}

        threading.Thread(target=_load, daemon=True).start()

    def get(self, key: str) -> int | None:
        return self.data.get(key)

    def keys(self) -> list[str]:
        return sorted(self.data)
