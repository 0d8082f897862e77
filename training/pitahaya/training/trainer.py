"""The training job: event log in, one evaluated LightGBM model and its MLflow run out.

`train` runs these stages, reporting each to the optional ``progress(stage, fraction)``:

1. ``events``: read the event log (or generate one) and load the scene.
2. ``features``: replay every user's stream through the scene's extractor (`build_matrix`)
   and split the rows by time into train / valid / test.
3. ``train``: fit LightGBM with the scene's ``[training]`` parameters (overridable), early
   stopping on the valid rows, deterministic and with at most ``num_threads`` threads. The
   booster is trimmed to its best iteration, so every copy of it predicts the same.
4. ``evaluate``: MAE and XAUC of the model and of the baselines on the test rows.
5. ``log``: one MLflow run in the experiment named after the scene:

   - params: LightGBM parameters, data source and split sizes, ``dataset_digest``;
   - metrics: ``test_mae``, ``test_xauc``, ``valid_mae``, ``baseline_*_mae`` / ``_xauc``,
     ``best_iteration`` and the ``valid_l1`` learning curve;
   - tags: ``pitahaya.scene``, ``pitahaya.code_version`` (git sha), ``pitahaya.dataset_digest``,
     ``pitahaya.model_uri``;
   - the model (``mlflow.lightgbm``, name ``model``, with signature and input example);
   - artifacts: ``scene/features.py`` and ``scene/scene.toml`` exactly as used,
     ``feature_importance.json``, and the parity set under ``parity/``.

The parity set is the contract with the packager, which must not import this package:
``parity/views.csv.gz`` holds the full, time-ordered streams of held-out users covering at
least ``parity_min_test_rows`` test rows (written by `write_events`);
``parity/features.npy`` the training-side float32 features of every one of those rows in file
order; ``parity/predictions.npy`` the booster's float32 predictions on them; and
``parity/is_test.npy`` which rows fall in the test period.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from pitahaya.client_runtime import Scene, View
from pitahaya.training.baselines import global_median, user_running_mean
from pitahaya.training.dataset import Dataset, TimeSplit, build_matrix, split_by_time
from pitahaya.training.errors import TrainingError
from pitahaya.training.eventlog import read_events, write_events
from pitahaya.training.generator import GeneratorConfig, generate_views
from pitahaya.training.metrics import mae, xauc

#: ``progress(stage, fraction)``: called as each stage advances, fraction in [0, 1].
Progress = Callable[[str, float], None]

#: Name of the logged model within the run.
MODEL_NAME = "model"
#: Artifact folder of the parity set.
PARITY_DIR = "parity"
#: Scene ``[training]`` key holding the number of boosting rounds (a `lgb.train` argument).
_ROUNDS_KEY = "n_estimators"


@dataclass(frozen=True)
class TrainConfig:
    """What to train on, where to log it, and how.

    Attributes:
        scene: Scene folder (holds ``scene.toml`` and the feature code).
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///data/mlflow.db``.
        events: Event log to train on (see `read_events`); None to generate one.
        generator: What to generate when ``events`` is None; None means
            ``GeneratorConfig(seed=seed)``.
        artifact_location: Artifact root for the experiment if it has to be created, as a
            URI or a local folder (e.g. ``data/mlartifacts``); None lets MLflow choose.
        model: Model family; only ``"lightgbm"`` for now.
        params: LightGBM parameters overriding the scene's ``[training]`` table.
        seed: Seed of LightGBM and of the parity user sample.
        valid_frac: Share of rows (by time) for early stopping.
        test_frac: Share of the latest rows for evaluation.
        early_stopping_rounds: Stop when the valid MAE has not improved for this many rounds.
        num_threads: LightGBM threads.
        parity_min_test_rows: Test rows the parity set must cover (all there are, if fewer).
        run_name: MLflow run name; None lets MLflow choose.
    """

    scene: str | Path
    tracking_uri: str
    events: str | Path | None = None
    generator: GeneratorConfig | None = None
    artifact_location: str | Path | None = None
    model: str = "lightgbm"
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    valid_frac: float = 0.1
    test_frac: float = 0.2
    early_stopping_rounds: int = 20
    num_threads: int = 2
    parity_min_test_rows: int = 10_000
    run_name: str | None = None

    def __post_init__(self) -> None:
        if self.model != "lightgbm":
            raise ValueError(f"unsupported model {self.model!r}; expected 'lightgbm'")
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
        model_uri: URI that loads the model with ``mlflow.lightgbm.load_model``
            (``models:/<model_id>``; also recorded as the run tag ``pitahaya.model_uri``).
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


def train(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train, evaluate and log one model for a scene.

    MLflow's global tracking URI is set to ``config.tracking_uri`` while the run is logged
    (the fluent model-logging APIs read it) and restored afterwards.

    Args:
        config: What to train on, where to log it, and how.
        progress: Optional ``progress(stage, fraction)`` callback (see the module docstring).

    Returns:
        Ids, model URI and metrics of the new MLflow run.

    Raises:
        EventLogError: the event log is unreadable or malformed.
        TrainingError: there are too few events to split by time.
        FileNotFoundError, ValueError: the scene folder or ``scene.toml`` is missing or bad.
    """
    started = time.monotonic()
    report = progress or (lambda stage, fraction: None)

    report("events", 0.0)
    scene = Scene.load(config.scene)
    extractor_cls = scene.extractor_class()
    views, source = _load_views(config)
    report("events", 1.0)

    dataset = build_matrix(views, extractor_cls, progress=lambda f: report("features", f))
    split = split_by_time(dataset, config.valid_frac, config.test_frac)
    for name in ("train", "valid", "test"):
        if not getattr(split, name).any():
            raise TrainingError(f"no {name} rows after splitting {len(dataset)} views by time; need more events")
    digest = _digest(dataset)

    params, rounds = _lightgbm_params(scene, config)
    booster, curve = _fit(dataset, split, params, rounds, config.early_stopping_rounds, lambda f: report("train", f))

    report("evaluate", 0.0)
    metrics = _evaluate(booster, dataset, split)
    report("evaluate", 1.0)

    report("log", 0.0)
    run_params = _run_params(config, params, rounds, split, dataset, source, digest)
    tags = {"pitahaya.scene": scene.name, "pitahaya.dataset_digest": digest}
    code_version = _git_sha(scene.path)
    if code_version:
        tags["pitahaya.code_version"] = code_version
    with _tracking_uri(config.tracking_uri):
        experiment_id = _experiment_id(scene.name, config.artifact_location)
        with mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name, tags=tags) as run:
            run_id = run.info.run_id
            mlflow.log_params(run_params)
            mlflow.log_metrics(metrics)
            curve_metrics = [Metric("valid_l1", value, 0, step) for step, value in enumerate(curve)]
            mlflow.MlflowClient().log_batch(run_id, metrics=curve_metrics)
            _log_training_data(config, scene.name, dataset, split, digest)
            report("log", 0.2)
            model_uri = _log_model(booster, dataset)
            mlflow.set_tag("pitahaya.model_uri", model_uri)
            mlflow.log_text(scene.feature_source, "scene/features.py")
            mlflow.log_text((scene.path / "scene.toml").read_text(), "scene/scene.toml")
            mlflow.log_table(_importance(booster), artifact_file="feature_importance.json")
            report("log", 0.6)
            n_parity = _log_parity_set(views, dataset, split, booster, config)
            mlflow.log_metric("parity_rows", n_parity)
    report("log", 1.0)

    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=model_uri,
        metrics={**metrics, "parity_rows": float(n_parity)},
        feature_names=dataset.feature_names,
        best_iteration=booster.num_trees(),
        n_train=int(split.train.sum()),
        n_valid=int(split.valid.sum()),
        n_test=int(split.test.sum()),
        n_parity_rows=n_parity,
        dataset_digest=digest,
        test_from=split.test_from,
        elapsed_s=time.monotonic() - started,
    )


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for the block, then back where it was."""
    # set_tracking_uri also exports MLFLOW_TRACKING_URI; restoring "the default" by value
    # would leak MLflow's cwd-relative default into the environment, so unset it instead.
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets


def _run_params(
    config: TrainConfig,
    params: dict[str, Any],
    rounds: int,
    split: TimeSplit,
    dataset: Dataset,
    source: str,
    digest: str,
) -> dict[str, Any]:
    """Everything needed to reproduce the run, as MLflow params."""
    run_params = {
        **params,
        _ROUNDS_KEY: rounds,
        "early_stopping_rounds": config.early_stopping_rounds,
        "model": config.model,
        "events": source,
        "n_train": int(split.train.sum()),
        "n_valid": int(split.valid.sum()),
        "n_test": int(split.test.sum()),
        "n_features": len(dataset.feature_names),
        "valid_from": split.valid_from,
        "test_from": split.test_from,
        "dataset_digest": digest,
    }
    if config.events is None:
        run_params.update({f"generator.{k}": v for k, v in asdict(_generator(config)).items()})
    return run_params


def _log_training_data(config: TrainConfig, name: str, dataset: Dataset, split: TimeSplit, digest: str) -> None:
    """Record the training matrix as the run's MLflow dataset input (shape, schema, digest, source)."""
    source = None if config.events is None else Path(config.events).resolve().as_uri()
    with warnings.catch_warnings():  # MLflow registers its local source class twice, then warns
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        data = mlflow.data.from_numpy(
            dataset.X[split.train], targets=dataset.y[split.train], source=source, name=name, digest=digest[:16]
        )
    mlflow.log_input(data, context="training")


def _load_views(config: TrainConfig) -> tuple[list[View], str]:
    """The views to train on, and a description of where they came from."""
    if config.events is not None:
        path = Path(config.events)
        return read_events(path), str(path.resolve())
    return generate_views(_generator(config)), "generator"


def _generator(config: TrainConfig) -> GeneratorConfig:
    """What to generate when the config names no event log."""
    return config.generator or GeneratorConfig(seed=config.seed)


def _lightgbm_params(scene: Scene, config: TrainConfig) -> tuple[dict[str, Any], int]:
    """LightGBM parameters (scene defaults, then overrides, then the job's fixed knobs) and rounds."""
    params = {**scene.training, **config.params}
    rounds = int(params.pop(_ROUNDS_KEY, 200))
    params.update(
        metric="l1",
        num_threads=config.num_threads,
        seed=config.seed,
        deterministic=True,
        force_row_wise=True,  # `deterministic` also needs one fixed histogram layout
        verbosity=-1,
    )
    return params, rounds


def _fit(
    dataset: Dataset,
    split: TimeSplit,
    params: dict[str, Any],
    rounds: int,
    patience: int,
    progress: Callable[[float], None],
) -> tuple[lgb.Booster, list[float]]:
    """Fit with early stopping; returns the booster cut to its best iteration and the valid-L1 curve."""
    names = list(dataset.feature_names)
    train_set = lgb.Dataset(dataset.X[split.train], dataset.y[split.train], feature_name=names, free_raw_data=False)
    valid_set = lgb.Dataset(dataset.X[split.valid], dataset.y[split.valid], reference=train_set)
    history: dict[str, Any] = {}

    def report(env: lgb.callback.CallbackEnv) -> None:
        progress((env.iteration + 1) / rounds)

    booster = lgb.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(patience, verbose=False), lgb.record_evaluation(history), report],
    )
    progress(1.0)
    best = booster.best_iteration or booster.current_iteration()
    curve = [float(v) for v in history["valid"]["l1"]]
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), curve


def _evaluate(booster: lgb.Booster, dataset: Dataset, split: TimeSplit) -> dict[str, float]:
    """Test MAE and XAUC of the model and the baselines, plus valid MAE and best iteration."""
    y_test = dataset.y[split.test]
    median = global_median(dataset.y[split.train], len(dataset))
    predictions = {
        "test": booster.predict(dataset.X[split.test]),
        "baseline_user_mean": user_running_mean(dataset, fallback=float(median[0]))[split.test],
        "baseline_global_median": median[split.test],
    }
    metrics = {
        "valid_mae": mae(dataset.y[split.valid], booster.predict(dataset.X[split.valid])),
        "best_iteration": float(booster.num_trees()),
    }
    for prefix, p in predictions.items():
        metrics[f"{prefix}_mae"] = mae(y_test, p)
        metrics[f"{prefix}_xauc"] = xauc(y_test, p)
    return metrics


def _experiment_id(name: str, artifact_location: str | Path | None) -> str:
    """Id of the experiment named ``name``, created with ``artifact_location`` if missing."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if artifact_location is not None:
        text = str(artifact_location)
        location = text if "://" in text or text.startswith("file:") else Path(text).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as e:  # another job created it in between
        if e.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id


def _log_model(booster: lgb.Booster, dataset: Dataset) -> str:
    """Log the booster with a named-column signature and a five-row input example; returns its URI."""
    example = pd.DataFrame(dataset.X[:5], columns=list(dataset.feature_names))
    info = mlflow.lightgbm.log_model(
        booster,
        name=MODEL_NAME,
        signature=infer_signature(example, booster.predict(example)),
        input_example=example,
        # Pinned, not inferred: inference imports the model in a subprocess and costs ~10 s.
        pip_requirements=[f"lightgbm=={lgb.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}"],
    )
    return info.model_uri


def _importance(booster: lgb.Booster) -> pd.DataFrame:
    """Gain and split importance of every feature, most useful first."""
    table = pd.DataFrame(
        {
            "feature": booster.feature_name(),
            "gain": booster.feature_importance("gain"),
            "split": booster.feature_importance("split"),
        }
    )
    return table.sort_values("gain", ascending=False, ignore_index=True)


def _parity_rows(dataset: Dataset, split: TimeSplit, min_test_rows: int, seed: int) -> np.ndarray:
    """Mask of all rows of randomly drawn users with test rows, until they cover ``min_test_rows``."""
    users, test_counts = np.unique(dataset.user_ids[split.test], return_counts=True)
    shuffle = np.random.default_rng(seed).permutation(len(users))
    covered = np.cumsum(test_counts[shuffle])
    n_users = min(int(np.searchsorted(covered, min_test_rows)) + 1, len(users))
    return np.isin(dataset.user_ids, users[shuffle[:n_users]])


def _log_parity_set(
    views: list[View], dataset: Dataset, split: TimeSplit, booster: lgb.Booster, config: TrainConfig
) -> int:
    """Write and log the parity set (see the module docstring); returns its row count."""
    rows = _parity_rows(dataset, split, config.parity_min_test_rows, config.seed)
    features = dataset.X[rows]
    with tempfile.TemporaryDirectory(prefix="pitahaya-parity-") as tmp:
        folder = Path(tmp)
        write_events(folder / "views.csv.gz", [views[i] for i in dataset.index[rows]])
        np.save(folder / "features.npy", features)
        np.save(folder / "predictions.npy", booster.predict(features).astype(np.float32))
        np.save(folder / "is_test.npy", split.test[rows])
        mlflow.log_artifacts(tmp, artifact_path=PARITY_DIR)
    return int(rows.sum())


def _digest(dataset: Dataset) -> str:
    """sha256 of the feature matrix and the labels, identifying the training data."""
    sha = hashlib.sha256()
    sha.update(np.ascontiguousarray(dataset.X).tobytes())
    sha.update(np.ascontiguousarray(dataset.y).tobytes())
    return sha.hexdigest()


def _git_sha(folder: Path) -> str | None:
    """Commit of the git checkout holding ``folder``, or None outside git."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
