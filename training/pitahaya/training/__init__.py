"""pitahaya training job: event logs in, a tracked, evaluated model out.

Workflow: `load_events` reads and validates event logs (CSV / TSV / JSONL / Parquet, local,
glob or S3, via an adapter; bad rows quarantined) into a `ViewTable`, or `generate_table`
makes one; `build_matrix` replays each user's stream through the scene's feature extractor
(`build_matrix_batch` computes the same with array operations); `split_by_time` cuts train /
valid / test; `train` does all of that, fits LightGBM or scikit-learn (locally or on Dask),
scores it against baselines, and logs the run, the model and the parity set to MLflow.
"""

from pitahaya.training.batch_features import build_matrix_batch
from pitahaya.training.dataset import Dataset, TimeSplit, build_matrix, split_by_time
from pitahaya.training.errors import EventLogError, FeatureMismatchError, TrainingError
from pitahaya.training.eventlog import BAD_ROW_REASONS, LoadReport, load_events, read_events, write_events
from pitahaya.training.generator import GeneratorConfig, generate_table, generate_views
from pitahaya.training.metrics import mae, xauc
from pitahaya.training.table import ViewTable
from pitahaya.training.trainer import TrainConfig, TrainResult, train

__all__ = [
    "BAD_ROW_REASONS",
    "Dataset",
    "EventLogError",
    "FeatureMismatchError",
    "GeneratorConfig",
    "LoadReport",
    "TimeSplit",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "ViewTable",
    "build_matrix",
    "build_matrix_batch",
    "generate_table",
    "generate_views",
    "load_events",
    "mae",
    "read_events",
    "split_by_time",
    "train",
    "write_events",
    "xauc",
]
