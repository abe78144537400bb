"""The shape of the package: a folder per concept, small modules and functions, no import cycle.

Read from the source (ast), never by importing it: what is checked is the code as written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrator"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports when it is imported (not inside functions, not
    for type checking only), plus the parent packages Python imports on the way."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                visit(getattr(node, "orelse", []))

    visit(tree.body)
    deps = set()
    for mod in found:
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in known and prefix != name and not name.startswith(prefix + "."):
                deps.add(prefix)
    return deps


def _every_import(name: str, path: Path, known: set[str]) -> set[str]:
    """Every package module `name` names in an import anywhere: inside functions (a lazy
    import still ties the two files), for type checking only, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            subs = {f"{base}.{a.name}" for a in node.names}
            found.update(subs & known if subs <= known else {base, *(subs & known)})
    return {m for m in found if m in known and m != name}


def _cycle(graph: dict[str, set[str]], skip: str = "") -> list[str] | None:
    """One cycle of `graph`, or None."""
    seen: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []

    def walk(n: str) -> list[str] | None:
        seen[n] = 1
        path.append(n)
        for d in sorted(graph[n]):
            if seen.get(d) == 1 and d != skip:
                return [*path[path.index(d) :], d]
            if d not in seen and (found := walk(d)):
                return found
        path.pop()
        seen[n] = 2
        return None

    for n in sorted(graph):
        if n not in seen and (found := walk(n)):
            return found
    return None


def test_no_file_imports_another_that_imports_it_back() -> None:
    """The house as `farm-studio look` draws it: one arrow per import, lazy and type-only ones
    too (a builder named by a string is no arrow); no circle."""
    mods = _modules()
    cycle = _cycle({n: _every_import(n, p, set(mods)) for n, p in mods.items()})
    assert cycle is None, "import circle: " + " → ".join(cycle or [])


def test_no_import_cycle_in_the_package() -> None:
    mods = _modules()
    graph = {n: _top_level_imports(n, p, set(mods)) for n, p in mods.items()}
    for n in list(graph):  # importing a module first imports the packages that hold it
        parts = n.split(".")
        graph[n] |= ({".".join(parts[:i]) for i in range(1, len(parts))} - {n}) & set(mods)
    seen: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []

    def walk(n: str) -> None:
        seen[n] = 1
        path.append(n)
        for d in sorted(graph[n]):
            if seen.get(d) == 1 and d != "orchestrator":
                cycle = [*path[path.index(d) :], d]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if d not in seen:
                walk(d)
        path.pop()
        seen[n] = 2

    for n in sorted(graph):
        if n not in seen:
            walk(n)


def test_modules_and_functions_stay_small() -> None:
    big = []
    for name, path in _modules().items():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            big.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    big.append(f"{name}.{node.name}: {n} lines (at most {MAX_FUNCTION_LINES})")
    assert not big, "\n".join(big)


def test_every_folder_says_what_each_file_holds() -> None:
    missing = []
    folders = {f.parent for f in PACKAGE.rglob("*.py")}  # every folder that holds code
    for folder in sorted(folders):
        readme = folder / "README.md"
        if not readme.exists():
            missing.append(f"{folder.relative_to(PACKAGE.parent)}/README.md")
            continue
        text = readme.read_text()
        for f in sorted(folder.glob("*.py")):
            if f.name not in ("__init__.py",) and f"`{f.name}`" not in text:
                missing.append(f"{readme.relative_to(PACKAGE.parent)} does not name `{f.name}`")
    assert not missing, "\n".join(missing)


def test_no_backend_kind_is_tested_outside_its_union_member() -> None:
    """A new agent or executor is one file and one union member: nothing else asks its kind."""
    hits = []
    for name, path in _modules().items():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for kind in ("ray", "local", "replay", "anthropic", "tuner", "command", "auto", "none"):
                if f'kind == "{kind}"' in line or f"kind == '{kind}'" in line:
                    hits.append(f"{name}:{lineno}: {line.strip()}")
    assert not hits, "\n".join(hits)
