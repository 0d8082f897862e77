"""What a training job is asked to do (`TrainConfig`) and what it produced (`TrainResult`).

Light on purpose (the standard library only, at run time): the command line builds its options
from the choices defined here without loading the training stack.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from pitahaya.training.generator import GeneratorConfig

#: ``progress(stage, fraction)``: called as each stage advances, fraction in [0, 1].
Progress = Callable[[str, float], None]

#: Model families (``TrainConfig.model``): LightGBM, or scikit-learn's histogram gradient boosting.
ModelFamily = Literal["lightgbm", "sklearn"]
#: Feature paths (``TrainConfig.features``) and engines (``TrainConfig.engine``).
FeaturePath = Literal["auto", "batch", "stream"]
Engine = Literal["local", "dask"]
MODEL_FAMILIES: tuple[ModelFamily, ...] = get_args(ModelFamily)
FEATURE_PATHS: tuple[FeaturePath, ...] = get_args(FeaturePath)
ENGINES: tuple[Engine, ...] = get_args(Engine)


@dataclass(frozen=True)
class TrainConfig:
    """What to train on, where to log it, and how.

    Attributes:
        scene: Scene folder (holds ``scene.toml`` and the feature code).
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///data/mlflow.db``.
        events: Event logs to train on: a file, a glob or an ``s3://`` URI (see
            `load_events`); None to generate one.
        adapter: Column mapping of the logs, ``standard`` or ``kuairand``.
        strict: Fail on the first bad row instead of quarantining it.
        quarantine_path: Where to write rejected rows (JSON Lines) besides the run's
            ``quarantine/bad_rows.jsonl`` artifact; None: the artifact only.
        generator: What to generate when ``events`` is None; None means
            ``GeneratorConfig(seed=seed)``.
        artifact_location: Artifact root for the experiment if it has to be created, as a
            URI or a local folder (e.g. ``data/mlartifacts``); None lets MLflow choose.
        model: Model family: ``lightgbm`` or ``sklearn``.
        features: ``batch`` (vectorized, checked against the scene's extractor), ``stream``
            (the scene's extractor on every row) or ``auto`` (batch for logs of at least
            ``batch_min_rows`` views when the scene names a batch module).
        engine: ``local`` or ``dask`` (featurize and train on a Dask cluster; LightGBM only).
        scheduler: Dask scheduler address; None starts a LocalCluster.
        params: Model parameters (LightGBM names) overriding the scene's ``[training]`` table.
        seed: Seed of the model and of the parity user sample.
        valid_frac: Share of rows (by time) for early stopping.
        test_frac: Share of the latest rows for evaluation.
        early_stopping_rounds: Stop when the valid MAE has not improved for this many rounds.
        refit: Once early stopping has picked the number of rounds, fit the final model again
            on the train and valid rows together (the valid rows are the most recent before the
            test period: the model should learn from them). False keeps the early-stopped model.
        num_threads: LightGBM threads (per worker with Dask).
        parity_min_test_rows: Test rows the parity set must cover (all there are, if fewer).
        batch_min_rows: Smallest log for which ``features="auto"`` picks the batch path.
        run_name: MLflow run name; None lets MLflow choose.
    """

    scene: str | Path
    tracking_uri: str
    events: str | Path | None = None
    adapter: str = "standard"
    strict: bool = False
    quarantine_path: str | Path | None = None
    generator: GeneratorConfig | None = None
    artifact_location: str | Path | None = None
    model: ModelFamily = "lightgbm"
    features: FeaturePath = "auto"
    engine: Engine = "local"
    scheduler: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    valid_frac: float = 0.1
    test_frac: float = 0.2
    early_stopping_rounds: int = 20
    refit: bool = True
    num_threads: int = 2
    parity_min_test_rows: int = 10_000
    batch_min_rows: int = 50_000
    run_name: str | None = None

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("model", self.model, MODEL_FAMILIES),
            ("features", self.features, FEATURE_PATHS),
            ("engine", self.engine, ENGINES),
        ):
            if value not in allowed:
                raise ValueError(f"unsupported {name} {value!r}; expected one of {', '.join(allowed)}")
        if self.engine == "dask" and self.model != "lightgbm":
            raise ValueError("engine 'dask' trains LightGBM only; use model 'lightgbm'")
        if self.events is not None and self.generator is not None:
            raise ValueError("give events or generator, not both")
        if self.num_threads < 1 or self.early_stopping_rounds < 1:
            raise ValueError("num_threads and early_stopping_rounds must be positive")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        run_id: MLflow run id.
        experiment_id: MLflow experiment id (the scene's experiment).
        model_uri: URI that loads the model with its MLflow flavor (``models:/<model_id>``;
            also recorded as the run tag ``pitahaya.model_uri``).
        metrics: Every scalar metric logged to the run.
        feature_names: Model input columns, in order.
        best_iteration: Number of boosting rounds kept.
        n_train: Training rows.
        n_valid: Early-stopping rows.
        n_test: Evaluation rows.
        n_parity_rows: Rows in the parity set.
        dataset_digest: sha256 (hex) of the feature matrix and labels.
        test_from: Unix time where the held-out test period starts (views from then on).
        elapsed_s: Wall time of the whole job.
        model_flavor: ``lightgbm`` or ``sklearn``.
        features_path: How the matrix was built: ``batch``, ``stream``, ``dask-batch``, ...
        bad_rows: Rejected rows per reason (empty for generated logs).
        quarantine_path: Where the rejected rows were written outside MLflow, if anywhere.
    """

    run_id: str
    experiment_id: str
    model_uri: str
    metrics: dict[str, float]
    feature_names: tuple[str, ...]
    best_iteration: int
    n_train: int
    n_valid: int
    n_test: int
    n_parity_rows: int
    dataset_digest: str
    test_from: float
    elapsed_s: float
    model_flavor: ModelFamily = "lightgbm"
    features_path: str = "stream"
    bad_rows: dict[str, int] = field(default_factory=dict)
    quarantine_path: str | None = None
