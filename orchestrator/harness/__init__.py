"""The harness library's home in the package: mounted read-only at /harness in every
harness-mode container (see README.md). Nothing here is imported by the orchestrator
at run time except to find the folder."""

from __future__ import annotations

from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
"""Mounted at /harness; `autoresearch_harness` is importable from there."""
