"""The packages' shape: no import cycle in lab or analysis.

Every import counts, the ones inside functions too: a lazy import that
closes a cycle is still a back-edge (the next engineer who moves it to the
top gets an ImportError, or a module half-initialised).  The graph is read
from the source (ast), so nothing is imported to check it.
"""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("lab", "analysis")


def _modules() -> dict[str, str]:
    """Dotted module name -> source path, for every module of PACKAGES."""
    out = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[dotted.removesuffix(".__init__")] = path
    return out


def _imports(modules: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the modules of PACKAGES it imports (anywhere in its source)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                # `from package import module` imports the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            graph[module] |= {t for t in targets if t in modules and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_lab_or_analysis():
    modules = _modules()
    assert "lab.runner" in modules and "analysis.sections.generic" in modules
    assert _cycles(_imports(modules)) == []


# What draws: a family's analysis (analysis.families.*) must reach none of it,
# so a notebook or another tool can take its tables without a renderer.
DRAWING = ("matplotlib", "analysis.plots", "analysis._pages", "analysis.report",
           "analysis.sections")


def _imported_names(path: str) -> set[str]:
    """Every module name the source at path imports, inside or outside PACKAGES."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _draws(name: str) -> bool:
    return any(name == d or name.startswith(d + ".") for d in DRAWING)


def test_a_familys_analysis_reaches_nothing_that_draws():
    modules = _modules()
    graph = _imports(modules)
    families = [m for m in modules if m.startswith("analysis.families.")]
    assert families, "no analysis.families modules found"
    for start in families:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        drawing = sorted(n for m in seen for n in _imported_names(modules[m]) | {m} if _draws(n))
        assert drawing == [], f"{start} reaches {drawing}"
