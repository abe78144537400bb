"""Pushing a local catalogue to the remote store: what to add, what to change, what is the same."""

from __future__ import annotations

from dataclasses import dataclass

from shelf.records import Book
from shelf.store import Store


@dataclass(frozen=True)
class Plan:
    add: list[Book]
    change: list[Book]
    same: int


def plan(local: list[Book], remote: dict[str, Book]) -> Plan:
    """What a sync would do, given the remote copies of the local books' ISBNs."""
    seen: set[str] = set()
    add, change, same = [], [], 0
    for book in local:
        if book.isbn in seen:
            raise ValueError(f"{book.isbn} is in the local catalogue twice")
        seen.add(book.isbn)
        theirs = remote.get(book.isbn)
        if theirs is None:
            add.append(book)
        elif theirs != book:
            change.append(book)
        else:
            same += 1
    return Plan(add, change, same)


def sync(local: list[Book], store: Store) -> Plan:
    """Make the store hold every local book as it is here; what it did."""
    todo = plan(local, store.get_many(b.isbn for b in local))
    for book in todo.add + todo.change:
        store.put(book)
    return todo
