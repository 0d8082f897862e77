"""Each component's public API is pinned in ``public_api/<component>.txt``: it grows or shrinks only on purpose.

A change to a component's ``__all__`` fails here until its file is edited in the same commit, so
the reviewer sees the API change as a diff of names. Every listed name must also resolve: a lazy
package (``__init__.pyi`` read by lazy_loader) that lists a name its submodule lacks fails here,
not on a user's first attribute access.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PINNED = Path(__file__).parent / "public_api"
COMPONENTS = sorted(path.stem for path in PINNED.glob("*.txt"))


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_public_api_is_the_pinned_one(component: str) -> None:
    module = importlib.import_module(f"pitahaya.{component}")
    pinned = PINNED.joinpath(f"{component}.txt").read_text().split()
    assert module.__all__ == pinned, f"pitahaya.{component}.__all__ changed: update public_api/{component}.txt"
    assert pinned == sorted(pinned)
    assert set(pinned) <= set(dir(module))
    for name in pinned:
        assert getattr(module, name) is not None


def test_every_component_is_pinned() -> None:
    roots = Path(__file__).parents[1]
    components = {path.parent.name for path in roots.glob("*/pitahaya/*/__init__.py")} | {"fleet"}
    assert set(COMPONENTS) == components


@pytest.mark.parametrize(
    ("component", "unloaded"),
    [("client_runtime", ("onnxruntime", "tuf", "urllib3")), ("training", ("lightgbm", "mlflow", "sklearn"))],
)
def test_importing_a_lazy_package_loads_none_of_its_submodules(component: str, unloaded: tuple[str, ...]) -> None:
    """A sandboxed worker or a fleet worker imports the package for one cheap name, not for the rest."""
    code = f"import sys, pitahaya.{component}\nprint(sorted(name for name in {unloaded!r} if name in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
