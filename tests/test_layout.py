"""Layout invariants from DESIGN.md: the namespace, the light client, no shadowed PyPA packaging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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


def test_client_runtime_imports_nothing_heavy() -> None:
    code = (
        "import sys, pitahaya.client_runtime as c; "
        "print([m for m in ('lightgbm','sklearn','mlflow','fastapi','boto3','sqlalchemy','pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.network
def test_installing_the_client_alone_pulls_no_heavy_dependency(tmp_path: Path) -> None:
    """Resolve what ``pip install ./client_runtime`` would install into a fresh venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    report = tmp_path / "report.json"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
         str(REPO / "client_runtime")],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if result.returncode != 0 and "Could not find a version" in result.stderr + result.stdout:
        pytest.skip(f"package index unreachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    installed = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "pitahaya-client" in installed and "onnxruntime" in installed
    assert installed & HEAVY == set()
