"""Lazy package exports from one table: the package's own ``if TYPE_CHECKING:`` imports.

A package lists what it exports once, as ordinary imports under ``if TYPE_CHECKING:`` (what
type checkers and editors read); ``lazy_exports`` reads that same block from the package's
source and returns ``__all__``, ``__getattr__`` and ``__dir__`` that import each name from
its module on first use. ``import sdk`` then costs almost nothing until a name is touched.

>>> __all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def _table(path: str, package: str) -> dict[str, tuple[str, str]]:
    """name -> (module to import, attribute in it, or "" for the module itself)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    table: dict[str, tuple[str, str]] = {}
    for node in block.body:
        if isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            module = importlib.util.resolve_name(base, package)
            for alias in node.names:
                # "from . import types": a submodule; "from .x import Name": an attribute
                attr = "" if node.module is None else alias.name
                target = f"{module}.{alias.name}" if node.module is None else module
                table[alias.asname or alias.name] = (target, attr)
    return table


def lazy_exports(
    package: str, path: str
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` from its ``TYPE_CHECKING`` block."""
    table = _table(path, package)
    names = sorted(table)

    def __getattr__(name: str) -> Any:
        try:
            module, attr = table[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = importlib.import_module(module)
        if attr:
            value = getattr(value, attr)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return list(names)

    return names, __getattr__, __dir__
