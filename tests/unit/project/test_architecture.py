"""The shape of the code: no import cycles inside a package, no source file over 400 lines.

The import graph is read from the source with ``ast`` (nothing is imported): every ``import``
and ``from ... import`` statement, module-level or inside a function, absolute or relative,
that names a module of the same package is an edge. Imports under ``if TYPE_CHECKING:`` are
left out: they never run. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg`` itself (its ``__init__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MAX_LINES = 400


def package_modules(package: str, root: Path = REPO) -> dict[str, Path]:
    """``{"pkg.sub.mod": path}`` for every ``.py`` file under ``root/pkg`` (``__init__`` files
    name their package)."""
    base = root / package.replace(".", "/")
    modules: dict[str, Path] = {}
    for path in sorted(base.rglob("*.py")):
        parts = [package, *path.relative_to(base).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except the bodies of ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imported(module: str, is_package: bool, node: ast.AST, known: set[str]) -> Iterator[str]:
    """The modules of ``known`` that one import statement in ``module`` loads."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            name = alias.name
            while name and name not in known:  # `import pkg.mod.attr` style prefixes
                name = name.rpartition(".")[0]
            if name:
                yield name
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            here = module.split(".") if is_package else module.split(".")[:-1]
            anchor = here[: len(here) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        for alias in node.names:
            if f"{base}.{alias.name}" in known:
                yield f"{base}.{alias.name}"
            elif base in known:
                yield base


def import_graph(package: str, root: Path = REPO) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports at run time."""
    modules = package_modules(package, root)
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        targets = {
            target
            for node in _runtime_nodes(tree)
            for target in _imported(module, is_package, node, known)
        }
        graph[module] = targets - {module}
    return graph


def import_cycles(package: str, root: Path = REPO) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected group of modules of ``package``."""
    graph = import_graph(package, root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_a_cycle_through(group, graph) for group in groups]


def _a_cycle_through(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A concrete cycle inside one strongly connected group, for the failure message."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back to start
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"{sorted(group)} is not strongly connected")


@pytest.mark.parametrize("package", ["sdk", "server_ref"])
def test_no_import_cycles(package: str) -> None:
    cycles = import_cycles(package)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


# Layers, bottom up: what each package may import from its own project (run time imports).
# sdk._protocol is the sans-I/O core: only the wire types and the errors beneath it; the
# token library and the policies sit above it, never inside. The server's model knows
# neither the loaders nor the engine; the engine never the HTTP layer.
LAYERS = {
    "sdk._protocol": ("sdk._protocol", "sdk.types", "sdk._exceptions"),
    "sdk.types": ("sdk.types",),
    "sdk.tokens": ("sdk.tokens", "sdk._lazy", "sdk._exceptions", "sdk.types"),
    "server_ref.models": ("server_ref.models",),
    "server_ref.loading": ("server_ref.loading", "server_ref.models"),
    "server_ref.engine": ("server_ref.engine", "server_ref.loading", "server_ref.models"),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_what_lies_beneath_it(layer: str) -> None:
    package = layer.partition(".")[0]
    allowed = LAYERS[layer]
    wrong = {
        f"{module} -> {target}"
        for module, targets in import_graph(package).items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if not any(target == a or target.startswith(a + ".") for a in allowed)
    }
    assert not wrong, f"{layer} reaches above its layer:\n" + "\n".join(sorted(wrong))


@pytest.mark.parametrize("package", ["sdk", "server_ref"])
def test_no_source_file_over_400_lines(package: str) -> None:
    too_long = {
        str(path.relative_to(REPO)): n
        for path in package_modules(package).values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"files over {MAX_LINES} lines: {too_long}"


# -- the walker itself ---------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_cycles_are_found_through_every_import_form(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.sub import b\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/b.py": "def f():\n    from .. import c\n",  # relative, inside a function
            "pkg/c.py": "import pkg.a\nimport os\n",
            "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.e\n",
            "pkg/e.py": "from pkg import d\n",
        },
    )
    assert import_graph("pkg", tmp_path) == {
        "pkg": set(),
        "pkg.a": {"pkg.sub.b"},
        "pkg.sub": set(),
        "pkg.sub.b": {"pkg.c"},
        "pkg.c": {"pkg.a"},
        "pkg.d": set(),  # TYPE_CHECKING only
        "pkg.e": {"pkg.d"},
    }
    assert import_cycles("pkg", tmp_path) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]


def test_imports_of_names_from_a_package_init_point_at_the_init(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.m import thing\n",
            "pkg/m.py": "from . import other\nfrom pkg import thing\n",
            "pkg/other.py": "",
        },
    )
    assert import_graph("pkg", tmp_path)["pkg.m"] == {"pkg.other", "pkg"}
    assert import_cycles("pkg", tmp_path) == [["pkg", "pkg.m", "pkg"]]
