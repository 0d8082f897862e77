"""With ``--json``, stdout holds only the JSON, whoever else writes to it during the work.

Real processes: the writers are C's ``printf`` (as LightGBM's logs), Python's ``print``, a raw
``write`` on descriptor 1 and a child process that inherits it (as Dask's workers do).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NOISY_COMMAND = """
import ctypes, json, os, subprocess, sys
from pitahaya.cli._common import emit_json, stdout_kept_for_json

with stdout_kept_for_json(as_json=sys.argv[1] == "json"):
    ctypes.CDLL(None).printf(b"[LightGBM] [Info] buffered by C, no newline")
    print("printed by Python")
    os.write(1, b"written to descriptor 1\\n")
    subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
emit_json({"ok": True})
"""
NOISE = ("[LightGBM] [Info] buffered by C", "printed by Python", "written to descriptor 1", "from a child process")


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", NOISY_COMMAND, mode], capture_output=True, text=True, check=True)


def test_with_json_every_other_writer_goes_to_stderr() -> None:
    done = _run("json")
    assert json.loads(done.stdout) == {"ok": True}
    assert all(noise in done.stderr for noise in NOISE)


def test_without_json_nothing_is_redirected() -> None:
    done = _run("text")
    assert all(noise in done.stdout for noise in NOISE) and not done.stderr


@pytest.mark.e2e
def test_train_on_dask_prints_only_json_on_stdout(tmp_path: Path) -> None:
    """LightGBM's network setup logs and Dask's messages used to come first on stdout."""
    command = [sys.executable, "-m", "pitahaya.cli.app", "train", "--engine", "dask", "--views", "20000"]
    done = subprocess.run(
        [*command, "--json", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["features_path"] == "dask-batch"
    assert "[LightGBM]" in done.stderr
