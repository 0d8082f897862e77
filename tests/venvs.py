"""Fresh virtual environments for install tests: what pip gives a device or a publisher's CI.

Import by name (``from venvs import pip_install``): the root ``tests`` folder is on the pytest
``pythonpath`` of the workspace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def pip_install(tmp_path: Path, *args: str) -> Path:
    """Create a venv in ``tmp_path/venv`` and run ``pip install ARGS`` in it; return its Python.

    Skips the calling test, with pip's reason, when the package index is unreachable; any other
    pip failure fails it.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", *args], capture_output=True, text=True, env=env, timeout=1200
    )
    if result.returncode != 0 and "Could not find a version" in result.stderr + result.stdout:
        pytest.skip(f"package index unreachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    return python
