"""Packages that load their public names on first use still tell type checkers what the names are.

Their ``if TYPE_CHECKING:`` block re-exports (``import X as X``) exactly the names ``_EXPORTS``
loads, each from the module it loads it from; else those names would be typed as Any.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest


@pytest.mark.parametrize("package", ["pitahaya.client_runtime", "pitahaya.training"])
def test_type_checking_imports_are_the_lazy_exports(package: str) -> None:
    module = importlib.import_module(package)
    tree = ast.parse(Path(str(module.__file__)).read_text())
    (block,) = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    imports = [node for node in block.body if isinstance(node, ast.ImportFrom)]
    assert len(imports) == len(block.body)
    aliases = [(alias, str(node.module)) for node in imports for alias in node.names]
    assert all(alias.asname == alias.name for alias, _ in aliases)
    assert {alias.name: where for alias, where in aliases} == {
        name: f"{package}.{submodule}" for name, submodule in module._EXPORTS.items()
    }
