"""The text-editor tool LLM agents edit through, executed by us on a scratch checkout.

Implements Anthropic's client tool `text_editor_20250728` (name
`str_replace_based_edit_tool`): view, str_replace, create, insert. Any file of
the checkout may be viewed (the direction, the evaluator); only paths matching
`implementation.paths` may be written — anything else returns an error result
and changes nothing. Whatever it writes is validated again when it is frozen.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.contract.paths import matches_any

MAX_VIEW_CHARS = 100_000


class EditError(Exception):
    """Shown to the model as an `is_error` tool result."""


class Editor:
    def __init__(self, root: Path, writable: list[str]) -> None:
        self.root = root.resolve()
        self.writable = writable
        self.changed: set[str] = set()

    def handle(self, args: dict[str, Any]) -> tuple[str, bool]:
        """Run one tool call; (text for the model, is_error)."""
        try:
            command = args.get("command")
            rel, path = self._resolve(str(args.get("path", "")))
            if command == "view":
                return self._view(rel, path, args.get("view_range")), False
            self._check_writable(rel, path)
            if command == "create":
                return self._create(rel, path, args.get("file_text")), False
            if command == "str_replace":
                return self._str_replace(
                    rel, path, args.get("old_str"), args.get("new_str", "")
                ), False
            if command == "insert":
                text = args.get("insert_text", args.get("new_str"))
                return self._insert(rel, path, args.get("insert_line"), text), False
            raise EditError(f"unknown command {command!r}; use view, str_replace, create or insert")
        except EditError as e:
            return f"Error: {e}", True

    def _resolve(self, raw: str) -> tuple[str, Path]:
        p = PurePosixPath(raw.strip())
        parts = [x for x in p.parts if x not in ("/", ".")]
        if parts[:1] == ["repo"] and not (self.root / "repo").exists():
            parts = parts[1:]
        if not parts and raw.strip() in ("/", ".", "/repo", ""):
            return ".", self.root
        if ".." in parts or any(part == ".git" for part in parts):
            raise EditError(f"{raw}: paths must stay inside the repository (no '..', no .git)")
        rel = "/".join(parts)
        path = self.root / rel
        if path.exists() and not path.resolve().is_relative_to(self.root):
            raise EditError(f"{raw}: resolves outside the repository")
        return rel, path

    def _check_writable(self, rel: str, path: Path) -> None:
        if not matches_any(rel, self.writable):
            raise EditError(
                f"{rel} is outside implementation.paths ({', '.join(self.writable)}); nothing was changed"
            )
        if path.is_symlink():
            raise EditError(f"{rel} is a symlink; nothing was changed")
        if path.exists() and not path.is_file():
            raise EditError(f"{rel} is not a regular file; nothing was changed")

    def _view(self, rel: str, path: Path, view_range: Any) -> str:
        if path.is_dir():
            entries = sorted(
                p.relative_to(self.root).as_posix() + ("/" if p.is_dir() else "")
                for p in path.rglob("*")
                if ".git" not in p.relative_to(self.root).parts
                and len(p.relative_to(path).parts) <= 2
            )
            return "\n".join(entries[:2000]) or "(empty)"
        if not path.is_file():
            raise EditError(f"{rel}: no such file")
        lines = path.read_text(errors="replace").splitlines()
        start, end = 1, len(lines)
        if view_range:
            try:
                start, end = int(view_range[0]), int(view_range[1])
            except (TypeError, ValueError, IndexError):
                raise EditError("view_range must be [start_line, end_line]") from None
            end = len(lines) if end == -1 else end
            if not 1 <= start <= max(end, 1) or end > len(lines):
                raise EditError(f"view_range {view_range} is outside the file's {len(lines)} lines")
        body = "\n".join(f"{n:6}\t{line}" for n, line in enumerate(lines[start - 1 : end], start))
        return body[:MAX_VIEW_CHARS] + (
            "\n[... truncated ...]" if len(body) > MAX_VIEW_CHARS else ""
        )

    def _write(self, rel: str, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.changed.add(rel)

    def _create(self, rel: str, path: Path, text: Any) -> str:
        if not isinstance(text, str):
            raise EditError("create needs file_text")
        self._write(rel, path, text)
        return f"Created {rel}"

    def _str_replace(self, rel: str, path: Path, old: Any, new: Any) -> str:
        if not path.is_file():
            raise EditError(f"{rel}: no such file")
        if not isinstance(old, str) or not old:
            raise EditError("str_replace needs a non-empty old_str")
        text = path.read_text()
        count = text.count(old)
        if count != 1:
            raise EditError(f"old_str occurs {count} times in {rel}; it must occur exactly once")
        self._write(rel, path, text.replace(old, str(new or ""), 1))
        return f"Edited {rel}"

    def _insert(self, rel: str, path: Path, line: Any, text: Any) -> str:
        if not path.is_file():
            raise EditError(f"{rel}: no such file")
        if not isinstance(text, str) or not isinstance(line, int):
            raise EditError("insert needs insert_line (int) and insert_text")
        lines = path.read_text().splitlines(keepends=True)
        if not 0 <= line <= len(lines):
            raise EditError(f"insert_line {line} is outside 0..{len(lines)}")
        if lines and not lines[-1].endswith("\n") and line == len(lines):
            lines[-1] += "\n"
        lines[line:line] = [text if text.endswith("\n") else text + "\n"]
        self._write(rel, path, "".join(lines))
        return f"Inserted into {rel} after line {line}"
