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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # each name's type, re-exported; at run time it loads on first use (below)
    from pitahaya.training.batch_features import build_matrix_batch as build_matrix_batch
    from pitahaya.training.config import TrainConfig as TrainConfig, TrainResult as TrainResult
    from pitahaya.training.dataset import (
        Dataset as Dataset,
        TimeSplit as TimeSplit,
        build_matrix as build_matrix,
        held_out_from as held_out_from,
        split_by_time as split_by_time,
    )
    from pitahaya.training.errors import (
        EventLogError as EventLogError,
        FeatureMismatchError as FeatureMismatchError,
        TrainingError as TrainingError,
    )
    from pitahaya.training.eventlog import (
        BAD_ROW_REASONS as BAD_ROW_REASONS,
        LoadReport as LoadReport,
        load_events as load_events,
        read_events as read_events,
        write_events as write_events,
    )
    from pitahaya.training.generator import (
        GeneratorConfig as GeneratorConfig,
        generate_table as generate_table,
        generate_views as generate_views,
    )
    from pitahaya.training.metrics import mae as mae, xauc as xauc
    from pitahaya.training.table import ViewTable as ViewTable
    from pitahaya.training.trainer import train as train


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
