"""The house shows its architecture: folder sizes, function sizes, and which way imports go.

Rules (docs/internals.md, "Layout"):
- no function over 80 lines in `anonymizers/` or `stream/`;
- at most 20 modules in any folder of `anonymizers/` or `stream/`;
- no import circle between modules, and none between sub-packages;
- `anonymizers` never imports `stream`; production code (everything in `stream/` outside
  `stream/local/`) never imports `stream.local` (the CLI names its local commands by string
  and imports them only when they are called);
- inside `anonymizers`: `policy` imports neither `stats` nor the units, `stats` imports no
  unit; inside `stream`: `tables`, `health` and `stages` never import `cli`, and `tables`
  and `health` never import `stages`.

Imports are read from the source (every `import` statement, inside functions too, but not
under `if TYPE_CHECKING:`), so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGES = ("anonymizers", "stream")
MAX_FUNCTION_LINES = 80
MAX_MODULES_PER_FOLDER = 20


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if _type_checking(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        else:
            yield from _import_nodes(node)


def _resolve(name: str) -> str | None:
    """The project module a dotted import names (a module, or the package of an attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports_of(module: str) -> frozenset[str]:
    """The project modules `module` imports."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` names the module; `from module import name`,
            # the module (a package's __init__ runs first either way, as for any import).
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return frozenset(found)


def _cycle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    """One cycle of `graph`, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _functions() -> Iterator[tuple[str, str, int]]:
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                yield module, node.name, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_80_lines() -> None:
    """Every function and method of anonymizers/ and stream/ fits in 80 lines."""
    long = [f"{m}.{f}: {n}" for m, f, n in _functions() if n > MAX_FUNCTION_LINES]
    assert long == []


def test_no_folder_holds_more_than_20_modules() -> None:
    """Each folder holds at most 20 modules (its __init__ not counted)."""
    for package in PACKAGES:
        for folder in [ROOT / package, *(p for p in (ROOT / package).rglob("*") if p.is_dir())]:
            modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
            assert len(modules) <= MAX_MODULES_PER_FOLDER, (folder, len(modules))


def test_no_import_circle_between_modules() -> None:
    """No module imports itself through others (lazy imports included)."""
    assert _cycle({m: imports_of(m) for m in MODULES}) is None


def _subpackage(module: str) -> str:
    """The sub-package a module belongs to (`anonymizers.stats`); a top-level module is its
    own node, and so is a package's public face (its `__init__`)."""
    parts = module.split(".")
    if len(parts) >= 2 and (ROOT / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    return f"{module}.__init__" if module in PACKAGES else module


def test_no_import_circle_between_subpackages() -> None:
    """Sub-packages, and the top-level modules beside them, import each other one way only."""
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        source = _subpackage(module)
        for target in imports_of(module):
            other = _subpackage(target)
            if other != source:
                graph.setdefault(source, set()).add(other)
    assert _cycle({k: frozenset(v) for k, v in graph.items()}) is None


FORBIDDEN = [
    # (importer prefix, imported prefix, except importer prefix)
    ("anonymizers", "stream", None),
    ("stream", "stream.local", "stream.local"),
    ("anonymizers.policy", "anonymizers.stats", None),
    ("stream.tables", "stream.cli", None),
    ("stream.health", "stream.cli", None),
    ("stream.stages", "stream.cli", None),
    ("stream.tables", "stream.stages", None),
    ("stream.health", "stream.stages", None),
]
UNITS = [
    m
    for m in MODULES
    if m.startswith("anonymizers.") and _subpackage(m) == "anonymizers" and m != "anonymizers"
]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "imported", "allowed"), FORBIDDEN)
def test_imports_go_one_way(importer: str, imported: str, allowed: str | None) -> None:
    """Lower layers never import higher ones; production never imports laptop tools."""
    wrong = sorted(
        f"{m} -> {t}"
        for m in MODULES
        if _under(m, importer) and not (allowed and _under(m, allowed))
        for t in imports_of(m)
        if _under(t, imported)
    )
    assert wrong == []


@pytest.mark.parametrize("layer", ["anonymizers.policy", "anonymizers.stats"])
def test_policy_and_stats_use_no_unit(layer: str) -> None:
    """The policy model and the statistics engine import no anonymisation unit (only the
    catalogue of fields, the exceptions and each other's lower layer)."""
    allowed = {"anonymizers.fields", "anonymizers.exceptions", "anonymizers.reasons"}
    wrong = sorted(
        f"{m} -> {t}"
        for m in MODULES
        if _under(m, layer)
        for t in imports_of(m)
        if t in UNITS and t not in allowed
    )
    assert wrong == []


def test_production_worker_imports_no_laptop_tool() -> None:
    """Everything the worker command reaches, lazily or not, stays outside stream.local."""
    seen: set[str] = set()
    todo = ["stream.worker", "stream.cli.worker"]
    while todo:
        module = todo.pop()
        if module in seen or module not in MODULES:
            continue
        seen.add(module)
        todo.extend(imports_of(module))
    assert sorted(m for m in seen if _under(m, "stream.local")) == []
