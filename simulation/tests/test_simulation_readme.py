"""The README's Python example runs as written, and logging it leaves MLflow's process-wide URI
and the working directory alone."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    (example,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    namespace: dict[str, object] = {}
    process_wide = mlflow.get_tracking_uri()
    stray = Path.cwd() / "mlruns"  # where MLflow puts artifacts of an experiment created without a location
    existed = stray.exists()
    exec(compile(example, str(README), "exec"), namespace)
    assert stray.exists() == existed, "the example wrote artifacts into the working directory"
    assert "oracle" in capsys.readouterr().out  # the table
    assert isinstance(namespace["run_id"], str) and namespace["run_id"]
    assert mlflow.get_tracking_uri() == process_wide  # logged through its own client, the global URI untouched
