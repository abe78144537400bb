"""One job of the CI runner, in a fresh trusted process: `python3 -I -B job.py KIND OUT ARGS...`.

    list  OUT PROJECT                       the trusted test list, the files to lint, and the
                                            package's executable lines (coverage's denominator)
    lint  OUT PROJECT FILE...               style and syntax of the project's files
    build OUT PROJECT ZIP                   the package, syntax-checked, as a zip to test
    test  OUT ZIP PROJECT MODULE [NAME...]  a test module (or some of its tests) on a build,
                                            with the lines of the package each test run hit

The project is the pristine one (read-only, from the run's trusted snapshot); the
result is JSON in OUT, a file in the runner's private folder, never this
process's output, which the tests themselves may print to.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import threading
import unittest
import zipfile
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

PACKAGE = "shelf"
MAX_LINE = 100


def executable_lines(source: str, name: str) -> set[int]:
    """The lines of a module that can run: every line any of its code objects starts."""
    lines: set[int] = set()
    todo: list[CodeType] = [compile(source, name, "exec")]
    while todo:
        code = todo.pop()
        lines.update(line for _, _, line in code.co_lines() if line)  # 0: the module's start
        todo.extend(c for c in code.co_consts if isinstance(c, CodeType))
    return lines


def sources(project: Path) -> list[Path]:
    return sorted((project / PACKAGE).rglob("*.py"))


def test_modules(project: Path) -> list[str]:
    return sorted(p.stem for p in (project / "tests").glob("test_*.py"))


def do_list(project: Path) -> dict[str, Any]:
    sys.path[:0] = [str(project), str(project / "tests")]
    loader = unittest.TestLoader()
    tests = {}
    for module in test_modules(project):
        suite = loader.loadTestsFromName(module)
        tests[module] = sorted(_strip(t.id(), module) for t in _flatten(suite))
    files = [str(p.relative_to(project)) for p in sorted(project.rglob("*.py"))]
    lines = {
        str(p.relative_to(project)): sorted(executable_lines(p.read_text(), str(p)))
        for p in sources(project)
    }
    return {"tests": tests, "files": files, "lines": lines}


def do_lint(project: Path, files: list[str]) -> dict[str, Any]:
    problems = []
    for rel in files:
        text = (project / rel).read_text()
        try:
            tree = ast.parse(text, rel)
        except SyntaxError as e:
            problems.append(f"{rel}:{e.lineno}: syntax error: {e.msg}")
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if len(line) > MAX_LINE:
                problems.append(f"{rel}:{n}: line longer than {MAX_LINE}")
            if line != line.rstrip() or "\t" in line:
                problems.append(f"{rel}:{n}: trailing whitespace or a tab")
        if text and not text.endswith("\n"):
            problems.append(f"{rel}: no newline at the end")
        problems += [f"{rel}: unused import {name}" for name in _unused_imports(tree)]
    return {"files": files, "problems": problems}


def _unused_imports(tree: ast.Module) -> list[str]:
    imported = {}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom) and not (
            isinstance(node, ast.ImportFrom) and node.module == "__future__"
        ):
            for alias in node.names:
                imported[(alias.asname or alias.name).split(".")[0]] = alias.name
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return sorted(imported[name] for name in imported if name not in used)


def do_build(project: Path, dest: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    files = sources(project)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for path in files:
            rel = str(path.relative_to(project))
            text = path.read_text()
            compile(text, rel, "exec")  # a syntax error fails the build
            digest.update(rel.encode() + b"\0" + text.encode())
            z.writestr(rel, text)
        z.writestr(f"{PACKAGE}/BUILD-INFO", f"sha256 {digest.hexdigest()}\n")
    return {"files": len(files), "sha256": digest.hexdigest()}


class Coverage:
    """The lines of the build's files that ran (sys.settrace, this process and its threads)."""

    def __init__(self, archive: Path) -> None:
        self.prefix = f"{archive}/"
        self.hits: dict[str, set[int]] = {}

    def __enter__(self) -> Coverage:
        sys.settrace(self._call)
        threading.settrace(self._call)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]

    def _call(self, frame: FrameType, event: str, arg: object) -> Any:
        name = frame.f_code.co_filename
        if not name.startswith(self.prefix):
            return None  # no line tracing outside the package: the tests stay fast
        hits = self.hits.setdefault(name[len(self.prefix) :], set())

        def line(frame: FrameType, event: str, arg: object) -> Any:
            if event == "line":
                hits.add(frame.f_lineno)
            return line

        return line


class Outcomes(unittest.TestResult):
    def __init__(self, module: str) -> None:
        super().__init__()
        self.module, self.outcomes = module, {}

    def _set(self, test: unittest.TestCase, outcome: str) -> None:
        self.outcomes[_strip(test.id(), self.module)] = outcome

    def addSuccess(self, test: unittest.TestCase) -> None:
        self._set(test, "passed")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._set(test, "failed")

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._set(test, "error")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        self._set(test, "skipped")  # a skipped test did not pass

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        self._set(test, "failed")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        self._set(test, "failed")


def do_test(archive: Path, project: Path, module: str, names: list[str]) -> dict[str, Any]:
    sys.path[:0] = [str(archive), str(project / "tests")]
    result = Outcomes(module)
    with Coverage(archive) as cov:
        mod = __import__(module)
        loader = unittest.TestLoader()
        suite = (
            unittest.TestSuite(loader.loadTestsFromName(n, mod) for n in names)
            if names
            else loader.loadTestsFromModule(mod)
        )
        suite.run(result)
    for test, trace in result.failures + result.errors:
        print(f"{test.id()}:\n{trace}", file=sys.stderr)
    return {
        "outcomes": result.outcomes,
        "lines": {rel: sorted(lines) for rel, lines in cov.hits.items()},
    }


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    out = []
    for item in suite:
        out += _flatten(item) if isinstance(item, unittest.TestSuite) else [item]
    return out


def _strip(test_id: str, module: str) -> str:
    return test_id.removeprefix(f"{module}.")


def main(argv: list[str]) -> None:
    kind, out, args = argv[1], Path(argv[2]), argv[3:]
    if kind == "list":
        result = do_list(Path(args[0]))
    elif kind == "lint":
        result = do_lint(Path(args[0]), args[1:])
    elif kind == "build":
        result = do_build(Path(args[0]), Path(args[1]))
    elif kind == "test":
        result = do_test(Path(args[0]), Path(args[1]), args[2], args[3:])
    else:
        sys.exit(f"no such job: {kind}")
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
