from .batch_features import build_matrix_batch as build_matrix_batch
from .config import TrainConfig as TrainConfig, TrainResult as TrainResult
from .dataset import (
    Dataset as Dataset,
    TimeSplit as TimeSplit,
    build_matrix as build_matrix,
    held_out_from as held_out_from,
    split_by_time as split_by_time,
)
from .errors import (
    EventLogError as EventLogError,
    FeatureMismatchError as FeatureMismatchError,
    TrainingError as TrainingError,
)
from .eventlog import (
    BAD_ROW_REASONS as BAD_ROW_REASONS,
    LoadReport as LoadReport,
    load_events as load_events,
    read_events as read_events,
    write_events as write_events,
)
from .generator import (
    GeneratorConfig as GeneratorConfig,
    generate_table as generate_table,
    generate_views as generate_views,
)
from .metrics import mae as mae, xauc as xauc
from .offline import OfflineEvaluation as OfflineEvaluation, evaluate_package as evaluate_package
from .table import ViewTable as ViewTable
from .trainer import train as train

__all__: list[str]
