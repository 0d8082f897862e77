"""pitahaya training job: event logs in, a tracked and evaluated model out.

Workflow: `read_events` (or `generate_views`) gives views; `build_matrix` replays each user's
stream through the scene's feature extractor; `split_by_time` cuts train / valid / test;
`train` does all of that, fits LightGBM, scores it against baselines with `mae` and `xauc`,
and logs the run, the model and the parity set to MLflow.
"""

from pitahaya.training.dataset import Dataset, TimeSplit, build_matrix, split_by_time
from pitahaya.training.errors import EventLogError, TrainingError
from pitahaya.training.eventlog import read_events, write_events
from pitahaya.training.generator import GeneratorConfig, generate_views
from pitahaya.training.metrics import mae, xauc
from pitahaya.training.trainer import TrainConfig, TrainResult, train

__all__ = [
    "Dataset",
    "EventLogError",
    "GeneratorConfig",
    "TimeSplit",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "build_matrix",
    "generate_views",
    "mae",
    "read_events",
    "split_by_time",
    "train",
    "write_events",
    "xauc",
]
