"""Every method of the Store interface is called by the contract suite, so
that a method added to the interface is tested on every kind of store."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from sessionpush.store.base import Store

CONTRACT_FILES = sorted(Path(__file__).parent.glob("test_store_contract*.py"))


def called_on_the_store(path: Path) -> set[str]:
    """The names of ``store.NAME(...)`` calls in one test module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "store"
        ):
            names.add(node.func.attr)
    return names


def test_every_store_method_is_called_by_a_contract_test() -> None:
    interface = {
        name
        for name, member in inspect.getmembers(Store, inspect.isfunction)
        if not name.startswith("_")
    }
    called: set[str] = set()
    for path in CONTRACT_FILES:
        called |= called_on_the_store(path)

    assert len(CONTRACT_FILES) >= 3
    assert interface - called == set()
