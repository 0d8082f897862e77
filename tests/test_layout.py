"""Layout invariants from DESIGN.md: the namespace, the light client, no shadowed PyPA packaging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from venvs import pip_install

REPO = Path(__file__).resolve().parents[1]
BLOCKED_MODULES = {"lightgbm", "sklearn", "mlflow", "fastapi", "boto3", "sqlalchemy", "pandas", "onnxmltools", "skl2onnx", "polars", "dask"}
HEAVY = {"lightgbm", "scikit-learn", "mlflow", "mlflow-skinny", "fastapi", "boto3", "sqlalchemy", "pandas", "onnxmltools", "skl2onnx"}


def test_pitahaya_is_a_namespace_everywhere() -> None:
    offenders = [p for p in REPO.glob("**/pitahaya/__init__.py") if ".venv" not in p.parts]
    assert offenders == []
    assert not (REPO / "packaging" / "__init__.py").exists()


def test_pypa_packaging_is_not_shadowed_from_the_repo_root() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import packaging.version, packaging; print(packaging.__file__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" in out.stdout, out.stdout


def test_client_runtime_works_where_no_heavy_library_is_installed() -> None:
    """Import and run the client with the heavy libraries made unimportable, as on a device.

    (Merely checking ``sys.modules`` is not enough: securesystemslib imports boto3 when it
    happens to be installed, as it is in this workspace venv.)
    """
    code = f"""
import importlib.abc, sys
BLOCKED = {sorted(BLOCKED_MODULES)!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed on this device")
sys.meta_path.insert(0, Block())
import pitahaya.client_runtime as c
from pitahaya.client_runtime import Runtime, fixed_plan, Candidate
print(len(fixed_plan([Candidate("v", 10.0, 1_000_000)]).items))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


@pytest.mark.network
def test_installing_the_client_alone_pulls_no_heavy_dependency(tmp_path: Path) -> None:
    """Resolve what ``pip install ./client_runtime`` would install into a fresh venv."""
    report = tmp_path / "report.json"
    pip_install(tmp_path, "--dry-run", "--quiet", "--report", str(report), str(REPO / "client_runtime"))
    installed = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "pitahaya-client" in installed and "onnxruntime" in installed
    assert installed & HEAVY == set()
