"""shelf: a small library-catalogue toolkit (ISBNs, catalogue records, search, a remote store)."""

__version__ = "1.0"
