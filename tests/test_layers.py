"""The package's layers: imports point down, and no import closes a circle.

Read from the source with :mod:`ast` (nothing is imported), counting every import wherever it
stands — at module level, inside a function, under ``if TYPE_CHECKING:`` — because an import
moved into a function to dodge a circle is still a circle of the design. A name imported from a
package's ``__init__`` counts as an import of the submodule that defines it when the ``__init__``
re-exports it (so ``from oodbench.detectors import Detector`` points at ``detectors.base``).

The order (lowest first) is :data:`LAYERS`; a module may import its own layer or any lower one.
Imports that still point up are listed in :data:`ALLOWED_UPWARD`, each with the reason it is
still there: the list may only shrink — an entry whose import is gone fails the test, so the
list stays true, and a new upward import fails until it is moved down or listed here.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "oodbench"

#: Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # shared types: import nothing above them (core/ imports only core/)
    ("shared", ("oodbench.core",)),
    ("components", ("oodbench.data", "oodbench.models", "oodbench.metrics", "oodbench.scores",
                    "oodbench.bounds")),
    ("detectors", ("oodbench.detectors",)),
    ("attacks/checks", ("oodbench.attacks", "oodbench.checks")),
    # the pipeline's stages, in oodbench/pipeline/ (its __init__ imports nothing)
    ("store", ("oodbench.pipeline", "oodbench.pipeline.store")),
    ("score", ("oodbench.pipeline.score",)),
    # a suite names components (it checks names against their registries and embeds their
    # specs) and is what the planner expands, so it sits above them, beside the planner
    ("suite/plan", ("oodbench.pipeline.suite", "oodbench.pipeline.plan")),
    ("execute", ("oodbench.pipeline.execute",)),
    ("run", ("oodbench.pipeline.run", "oodbench.pipeline.recompute")),
    ("products", ("oodbench.report", "oodbench.zoo", "oodbench.leaderboard", "oodbench.train")),
    # the CLI, and the package's face, oodbench/__init__.py (its public API re-exports
    # run/suite/models lazily)
    ("cli", ("oodbench.cli", "oodbench")),
]

#: Imports from a lower layer up to a higher one that could not be removed yet, as
#: (importer, imported), each with a comment saying why. Only shrink it: each entry must still
#: exist. When this test was written (main at 24df866) there were 27 such imports and 4 circles
#: (attacks and checks importing ``Cost`` from plan/ and ``RowKind`` from score/, detectors and
#: the store importing array keys from score/, checks importing execution's task types, the
#: planner importing the executor's data loader and the package's version from the top);
#: moving those names into ``core/`` left none, so the list is empty.
ALLOWED_UPWARD: set[tuple[str, str]] = set()


# --------------------------------------------------------------------------- the graph


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file; a package's ``__init__.py`` under the package's name."""
    out = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _prefix(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The absolute module an ``ImportFrom`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module if _is_package(path) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return base + ("." + node.module if node.module else "")


class ImportGraph:
    """Edges between the package's modules, from every import statement of each file."""

    def __init__(self, package: Path = PACKAGE):
        self.modules = _modules(package)
        self.trees = {m: ast.parse(p.read_text(), str(p)) for m, p in self.modules.items()}
        self.exports = {m: self._exports(m) for m, p in self.modules.items() if _is_package(p)}
        self.edges: dict[str, set[str]] = {m: set() for m in self.modules}
        for module, path in self.modules.items():
            for node in ast.walk(self.trees[module]):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    pre = _prefix(node, module, path)
                    targets = [f"{pre}.{a.name}" for a in node.names]
                else:
                    continue
                for target in targets:
                    found = self._defining(target)
                    if found is not None and found != module:
                        self.edges[module].add(found)

    def _resolve(self, name: str) -> Optional[str]:
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        return name or None

    def _exports(self, package: str) -> dict[str, str]:
        """Names a package's ``__init__`` imports at its top level -> where they come from."""
        out = {}
        for node in self.trees[package].body:
            if isinstance(node, ast.ImportFrom):
                pre = _prefix(node, package, self.modules[package])
                for a in node.names:
                    out[a.asname or a.name] = f"{pre}.{a.name}"
        return out

    def _defining(self, target: str, depth: int = 0) -> Optional[str]:
        """The module ``target`` (a module, or ``module.Name``) is defined in."""
        found = self._resolve(target)
        if found is None or depth > 8 or found not in self.exports or target == found:
            return found
        name = target[len(found) + 1:].split(".")[0]
        if name not in self.exports[found]:
            return found
        return self._defining(self.exports[found][name], depth + 1) or found

    def circles(self) -> list[list[str]]:
        """Strongly connected groups of more than one module (Tarjan, iterative). A package's
        ``__init__`` that imports its own submodules is left out: a package loads its parts,
        and its parts importing a name it re-exports are followed to the defining module."""
        edges = {m: {t for t in ts if not self._is_parent(m, t) and not self._is_parent(t, m)}
                 for m, ts in self.edges.items()}
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        out: list[list[str]] = []
        for root in sorted(edges):
            if root in index:
                continue
            work = [(root, iter(sorted(edges[root])))]
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            while work:
                v, it = work[-1]
                w = next(it, None)
                if w is not None:
                    if w not in index:
                        index[w] = low[w] = len(index)
                        stack.append(w)
                        on_stack.add(w)
                        work.append((w, iter(sorted(edges[w]))))
                    elif w in on_stack:
                        low[v] = min(low[v], index[w])
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        group.append(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        out.append(sorted(group))
        return out

    def _is_parent(self, a: str, b: str) -> bool:
        return _is_package(self.modules[a]) and b.startswith(a + ".")


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of ``module`` (the package's own name matches only its
    ``__init__``, so a new top-level module must be given a layer)."""
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            child = module.startswith(prefix + ".") and prefix != PACKAGE.name
            if (module == prefix or child) and len(prefix) > best:
                best, found = len(prefix), i
    if found is None:
        raise KeyError(f"{module} has no layer: add it to LAYERS in tests/test_layers.py")
    return found


def upward_imports(graph: ImportGraph) -> set[tuple[str, str]]:
    return {(m, t) for m, ts in graph.edges.items() for t in ts if layer_of(t) > layer_of(m)}


# --------------------------------------------------------------------------- the tests

GRAPH = ImportGraph()


def test_every_module_has_a_layer():
    for module in GRAPH.modules:
        layer_of(module)
    assert layer_of("oodbench.pipeline.execute.tasks") == layer_of("oodbench.pipeline.execute")
    with pytest.raises(KeyError, match="has no layer"):
        layer_of("oodbench.not_placed_yet")


def test_no_import_closes_a_circle():
    assert GRAPH.circles() == []


def test_imports_point_down():
    new = sorted(upward_imports(GRAPH) - ALLOWED_UPWARD)
    assert not new, "imports pointing up the layers (move the shared name down):\n" + "\n".join(
        f"  {m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]})" for m, t in new)


def test_allowed_upward_imports_still_exist():
    gone = sorted(ALLOWED_UPWARD - upward_imports(GRAPH))
    assert not gone, f"remove these from ALLOWED_UPWARD, they no longer exist: {gone}"


def test_core_imports_only_core():
    for module, targets in GRAPH.edges.items():
        if module == "oodbench.core" or module.startswith("oodbench.core."):
            outside = sorted(t for t in targets if not t.startswith("oodbench.core"))
            assert not outside, f"{module} imports {outside}: core/ imports nothing above it"


def test_the_graph_sees_function_level_and_type_checking_imports(tmp_path):
    """The graph itself: an import inside a function or under TYPE_CHECKING is an edge, a
    re-export is followed, and a circle made that way is found."""
    pkg = tmp_path / "oodbench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from oodbench.sub.b import B\n")
    (pkg / "a.py").write_text("def f():\n    from oodbench.sub import B\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from .. import a\nclass B: ...\n")
    graph = ImportGraph(pkg)
    assert graph.edges["oodbench.a"] == {"oodbench.sub.b"}
    assert graph.edges["oodbench.sub.b"] == {"oodbench.a"}
    assert graph.circles() == [["oodbench.a", "oodbench.sub.b"]]
