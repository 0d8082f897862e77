"""pitahaya training job: event logs in, a tracked, evaluated model out.

Workflow: `load_events` reads and validates event logs (CSV / TSV / JSONL / Parquet, local,
glob or S3, via an adapter; bad rows quarantined) into a `ViewTable`, or `generate_table`
makes one; `build_matrix` replays each user's stream through the scene's feature extractor
(`build_matrix_batch` computes the same with array operations); `split_by_time` cuts train /
valid / test; `train` does all of that, fits LightGBM or scikit-learn (locally or on Dask),
scores it against baselines, and logs the run, the model and the parity set to MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it. Each loads on first use (PEP 562), so code
#: that needs only the generator (a fleet simulator's worker process) does not pay for
#: LightGBM and MLflow.
_EXPORTS = {
    "BAD_ROW_REASONS": "eventlog",
    "Dataset": "dataset",
    "EventLogError": "errors",
    "FeatureMismatchError": "errors",
    "GeneratorConfig": "generator",
    "LoadReport": "eventlog",
    "TimeSplit": "dataset",
    "TrainConfig": "config",
    "TrainResult": "config",
    "TrainingError": "errors",
    "ViewTable": "table",
    "build_matrix": "dataset",
    "build_matrix_batch": "batch_features",
    "generate_table": "generator",
    "generate_views": "generator",
    "held_out_from": "dataset",
    "load_events": "eventlog",
    "mae": "metrics",
    "read_events": "eventlog",
    "split_by_time": "dataset",
    "train": "trainer",
    "write_events": "eventlog",
    "xauc": "metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
