"""The training job: event logs in, one evaluated model and its MLflow run out.

`train` runs these stages, reporting each to the optional ``progress(stage, fraction)``:

1. ``events``: read and validate the event logs (`load_events`: CSV / TSV / JSONL / Parquet,
   local, glob or S3, through an adapter; bad rows quarantined), or generate a log.
2. ``features``: build the feature matrix with the vectorized batch path (logs of at least
   ``batch_min_rows`` views, when the scene has a batch twin) or the scene's streaming
   extractor, locally or on Dask workers; split rows by time into train / valid / test; then
   replay the parity users through the streaming extractor and refuse to train
   (`FeatureMismatchError`) if the batch features differ.
3. ``train``: LightGBM (scene ``[training]`` parameters, overridable; early stopping on the
   valid rows; deterministic, ``num_threads`` threads; or `lightgbm.dask` with
   ``engine="dask"``), or scikit-learn's HistGradientBoostingRegressor (``model="sklearn"``).
4. ``evaluate``: MAE and XAUC of the model and of the baselines on the test rows, MAE per
   segment, and the preload effect against the fixed policy (see `evaluation`).
5. ``log``: one MLflow run in the experiment named after the scene:

   - params: model parameters, data source, adapter, feature path, engine, split sizes,
     ``dataset_digest``;
   - metrics: ``test_mae``, ``test_xauc``, ``valid_mae``, ``baseline_*_mae`` / ``_xauc``,
     ``*_mae_<segment>``, ``preload_*``, ``rows_read``, ``bad_rows`` and
     ``bad_rows_<reason>``, ``best_iteration`` and the ``valid_l1`` learning curve;
   - tags: ``pitahaya.scene``, ``pitahaya.code_version`` (git sha), ``pitahaya.dataset_digest``,
     ``pitahaya.model_uri``, ``pitahaya.model_flavor``, ``pitahaya.features_path``;
   - the model (``mlflow.lightgbm`` or ``mlflow.sklearn``, name ``model``, with signature and
     input example) and the training matrix as an MLflow dataset (with its digest);
   - artifacts: ``scene/features.py`` and ``scene/scene.toml`` exactly as used,
     ``feature_importance.json``, ``plots/feature_importance.png``,
     ``plots/predicted_vs_actual.png``, the quarantine file under ``quarantine/`` (when
     rows were rejected), and the parity set under ``parity/``.

The parity set is the contract with the packager, which must not import this package:
``parity/views.csv.gz`` holds the full, time-ordered streams of held-out users covering at
least ``parity_min_test_rows`` test rows (written by `write_events`);
``parity/features.npy`` the float32 features of every one of those rows in file order, as the
scene's streaming extractor computes them; ``parity/predictions.npy`` the model's float32
predictions on them; and ``parity/is_test.npy`` which rows fall in the test period.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from pitahaya.client_runtime import FeatureExtractor, Scene
from pitahaya.training.baselines import global_median, user_running_mean
from pitahaya.training.batch_features import build_matrix_batch, supports, verify_batch_features
from pitahaya.training.dataset import Dataset, TimeSplit, build_matrix, split_by_time, stream_features
from pitahaya.training.distributed import dask_client, featurize_on_workers, fit_lightgbm_dask
from pitahaya.training.errors import TrainingError
from pitahaya.training.evaluation import importance_figure, predicted_vs_actual_figure, preload_effect, segment_mae
from pitahaya.training.eventlog import LoadReport, load_events, write_events
from pitahaya.training.generator import GeneratorConfig, generate_table
from pitahaya.training.metrics import mae, xauc
from pitahaya.training.models import MODEL_FAMILIES, FittedModel, fit_lightgbm, fit_sklearn, sklearn_params
from pitahaya.training.table import ViewTable

#: ``progress(stage, fraction)``: called as each stage advances, fraction in [0, 1].
Progress = Callable[[str, float], None]

#: Artifact folder of the parity set.
PARITY_DIR = "parity"
#: Scene ``[training]`` key holding the number of boosting rounds (a `lgb.train` argument).
_ROUNDS_KEY = "n_estimators"
#: Feature paths (``TrainConfig.features``) and engines (``TrainConfig.engine``).
FEATURE_PATHS = ("auto", "batch", "stream")
ENGINES = ("local", "dask")


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
            ``batch_min_rows`` views when the scene has a batch twin).
        engine: ``local`` or ``dask`` (featurize and train on a Dask cluster; LightGBM only).
        scheduler: Dask scheduler address; None starts a LocalCluster.
        params: Model parameters (LightGBM names) overriding the scene's ``[training]`` table.
        seed: Seed of the model and of the parity user sample.
        valid_frac: Share of rows (by time) for early stopping.
        test_frac: Share of the latest rows for evaluation.
        early_stopping_rounds: Stop when the valid MAE has not improved for this many rounds.
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
    model: str = "lightgbm"
    features: str = "auto"
    engine: str = "local"
    scheduler: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    valid_frac: float = 0.1
    test_frac: float = 0.2
    early_stopping_rounds: int = 20
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
    model_flavor: str = "lightgbm"
    features_path: str = "stream"
    bad_rows: dict[str, int] = field(default_factory=dict)
    quarantine_path: str | None = None


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
        EventLogError: an event log is unreadable, or (``strict``) holds a bad row.
        FeatureMismatchError: the batch features differ from the scene's extractor.
        TrainingError: too few good events to split by time.
        FileNotFoundError, ValueError: the scene folder or ``scene.toml`` is missing or bad.
    """
    started = time.monotonic()
    report = progress or (lambda stage, fraction: None)

    report("events", 0.0)
    scene = Scene.load(config.scene)
    extractor_cls = scene.extractor_class()
    with tempfile.TemporaryDirectory(prefix="pitahaya-train-") as tmp:
        quarantine = Path(config.quarantine_path or Path(tmp) / "bad_rows.jsonl")
        table, loaded, source = _load_table(config, quarantine, lambda f: report("events", f))
        report("events", 1.0)

        engine = dask_client(config.scheduler) if config.engine == "dask" else nullcontext(None)
        with engine as client:
            dataset, features_path, distributed = _featurize(config, table, scene, extractor_cls, client, report)
            split = split_by_time(dataset, config.valid_frac, config.test_frac)
            for name in ("train", "valid", "test"):
                if not getattr(split, name).any():
                    raise TrainingError(
                        f"no {name} rows after splitting {len(dataset)} views by time; need more events"
                    )
            parity = _parity_rows(dataset, split, config.parity_min_test_rows, config.seed)
            parity_X = _streamed_parity_features(table, extractor_cls, dataset, parity, features_path)
            report("features", 1.0)
            fitted = _fit(config, scene, dataset, split, distributed, client, lambda f: report("train", f))

        report("evaluate", 0.0)
        metrics, test_predictions = _evaluate(fitted, dataset, split, scene.policy)
        metrics.update(_load_metrics(loaded))
        report("evaluate", 1.0)

        report("log", 0.0)
        digest = _digest(dataset)
        run_params = _run_params(config, fitted, split, dataset, source, digest, features_path)
        tags = {
            "pitahaya.scene": scene.name,
            "pitahaya.dataset_digest": digest,
            "pitahaya.model_flavor": fitted.flavor,
            "pitahaya.features_path": features_path,
        }
        code_version = _git_sha(scene.path)
        if code_version:
            tags["pitahaya.code_version"] = code_version
        with _tracking_uri(config.tracking_uri):
            experiment_id = _experiment_id(scene.name, config.artifact_location)
            with mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name, tags=tags) as run:
                run_id = run.info.run_id
                mlflow.log_params(run_params)
                mlflow.log_metrics(metrics)
                curve_metrics = [Metric("valid_l1", value, 0, step) for step, value in enumerate(fitted.valid_curve)]
                mlflow.MlflowClient().log_batch(run_id, metrics=curve_metrics)
                _log_training_data(config, scene.name, dataset, split, digest)
                report("log", 0.2)
                example = pd.DataFrame(dataset.X[:5], columns=list(dataset.feature_names))
                model_uri = fitted.log(example)
                mlflow.set_tag("pitahaya.model_uri", model_uri)
                mlflow.log_text(scene.feature_source, "scene/features.py")
                mlflow.log_text((scene.path / "scene.toml").read_text(), "scene/scene.toml")
                importance = fitted.importance(dataset.feature_names, dataset.X[split.valid], dataset.y[split.valid])
                mlflow.log_table(importance, artifact_file="feature_importance.json")
                _log_figures(importance, dataset.y[split.test], test_predictions)
                if loaded.quarantine_path:
                    mlflow.log_artifact(loaded.quarantine_path, artifact_path="quarantine")
                report("log", 0.6)
                n_parity = _log_parity_set(table, dataset, split, parity, parity_X, fitted)
                mlflow.log_metric("parity_rows", n_parity)
    report("log", 1.0)

    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=model_uri,
        metrics={**metrics, "parity_rows": float(n_parity)},
        feature_names=dataset.feature_names,
        best_iteration=fitted.best_iteration,
        n_train=int(split.train.sum()),
        n_valid=int(split.valid.sum()),
        n_test=int(split.test.sum()),
        n_parity_rows=n_parity,
        dataset_digest=digest,
        test_from=split.test_from,
        elapsed_s=time.monotonic() - started,
        model_flavor=fitted.flavor,
        features_path=features_path,
        bad_rows=dict(loaded.bad_rows),
        quarantine_path=str(config.quarantine_path) if config.quarantine_path and loaded.quarantine_path else None,
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


def _load_table(
    config: TrainConfig, quarantine: Path, progress: Callable[[float], None]
) -> tuple[ViewTable, LoadReport, str]:
    """The views to train on, what loading them rejected, and where they came from."""
    if config.events is None:
        table = generate_table(_generator(config))
        return table, LoadReport(("generator",), len(table), len(table), {}, None), "generator"
    spec = str(config.events)
    table, loaded = load_events(
        spec, adapter=config.adapter, strict=config.strict, quarantine_path=quarantine, progress=progress
    )
    source = spec if spec.startswith("s3://") or len(loaded.sources) != 1 else str(Path(spec).resolve())
    return table, loaded, source


def _load_metrics(loaded: LoadReport) -> dict[str, float]:
    """Row counts of the load: read, rejected in total and per reason."""
    metrics = {"rows_read": float(loaded.n_rows), "bad_rows": float(loaded.n_bad)}
    metrics.update({f"bad_rows_{reason}": float(count) for reason, count in loaded.bad_rows.items()})
    return metrics


def _featurize(
    config: TrainConfig,
    table: ViewTable,
    scene: Scene,
    extractor_cls: type[FeatureExtractor],
    client: Any,
    report: Progress,
) -> tuple[Dataset, str, Any]:
    """The feature matrix, the path that built it, and (Dask) the features left on the workers."""
    def on_progress(fraction: float) -> None:
        report("features", 0.95 * fraction)

    if config.features == "batch" and not supports(extractor_cls):
        raise ValueError(f"scene {scene.name!r} has no batch feature path; use features 'stream' or 'auto'")
    if client is not None:
        on_progress(0.0)
        distributed, dataset = featurize_on_workers(client, table, scene.feature_source, extractor_cls.feature_names)
        return dataset, "dask-batch" if supports(extractor_cls) else "dask-stream", distributed
    use_batch = config.features == "batch" or (
        config.features == "auto" and supports(extractor_cls) and len(table) >= config.batch_min_rows
    )
    if use_batch:
        return build_matrix_batch(table, extractor_cls, on_progress), "batch", None
    return build_matrix(table, extractor_cls, on_progress), "stream", None


def _streamed_parity_features(
    table: ViewTable, extractor_cls: type[FeatureExtractor], dataset: Dataset, rows: np.ndarray, features_path: str
) -> np.ndarray:
    """The parity rows' features from the scene's extractor; checks the batch path against them."""
    if "batch" in features_path:
        return verify_batch_features(table, extractor_cls, dataset, rows)
    return stream_features(table.views(dataset.index[rows]), extractor_cls)


def _run_params(
    config: TrainConfig,
    fitted: FittedModel,
    split: TimeSplit,
    dataset: Dataset,
    source: str,
    digest: str,
    features_path: str,
) -> dict[str, Any]:
    """Everything needed to reproduce the run, as MLflow params."""
    run_params = {
        **fitted.params,
        "early_stopping_rounds": config.early_stopping_rounds,
        "model": config.model,
        "events": source,
        "adapter": config.adapter,
        "strict": config.strict,
        "features": features_path,
        "engine": config.engine,
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
    source = None
    if config.events is not None:
        spec = str(config.events)
        source = spec if spec.startswith("s3://") else Path(spec).resolve().as_uri()
    with warnings.catch_warnings():  # MLflow registers its local source class twice, then warns
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        data = mlflow.data.from_numpy(
            dataset.X[split.train], targets=dataset.y[split.train], source=source, name=name, digest=digest[:16]
        )
    mlflow.log_input(data, context="training")


def _log_figures(importance: pd.DataFrame, y_test: np.ndarray, p_test: np.ndarray) -> None:
    """Feature importance and predicted-vs-actual, as PNG artifacts under ``plots/``."""
    import matplotlib.pyplot as plt

    for figure, name in (
        (importance_figure(importance), "plots/feature_importance.png"),
        (predicted_vs_actual_figure(y_test, p_test), "plots/predicted_vs_actual.png"),
    ):
        mlflow.log_figure(figure, name)
        plt.close(figure)


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
    config: TrainConfig,
    scene: Scene,
    dataset: Dataset,
    split: TimeSplit,
    distributed: Any,
    client: Any,
    progress: Callable[[float], None],
) -> FittedModel:
    """Fit the configured model family on the train rows, early-stopped on the valid rows."""
    params, rounds = _lightgbm_params(scene, config)
    patience = config.early_stopping_rounds
    if config.model == "sklearn":
        translated = sklearn_params(params, rounds, patience, config.seed)
        fitted = fit_sklearn(
            dataset.X[split.train],
            dataset.y[split.train],
            dataset.X[split.valid],
            dataset.y[split.valid],
            params=translated,
            progress=progress,
        )
        fitted.params = translated
        return fitted
    if client is not None:
        fitted = fit_lightgbm_dask(
            client,
            distributed,
            names=dataset.feature_names,
            valid_from=split.valid_from,
            test_from=split.test_from,
            params=params,
            rounds=rounds,
            patience=patience,
            progress=progress,
        )
    else:
        fitted = fit_lightgbm(
            dataset.X[split.train],
            dataset.y[split.train],
            dataset.X[split.valid],
            dataset.y[split.valid],
            feature_names=dataset.feature_names,
            params=params,
            rounds=rounds,
            patience=patience,
            progress=progress,
        )
    fitted.params = {**params, _ROUNDS_KEY: rounds}
    return fitted


def _evaluate(
    fitted: FittedModel, dataset: Dataset, split: TimeSplit, policy: Mapping[str, Any]
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of the model and the baselines on the test rows; also returns the model's test predictions."""
    y_test = dataset.y[split.test]
    median = global_median(dataset.y[split.train], len(dataset))
    predictions = {
        "test": fitted.predict(dataset.X[split.test]),
        "baseline_user_mean": user_running_mean(dataset, fallback=float(median[0]))[split.test],
        "baseline_global_median": median[split.test],
    }
    metrics = {
        "valid_mae": mae(dataset.y[split.valid], fitted.predict(dataset.X[split.valid])),
        "best_iteration": float(fitted.best_iteration),
    }
    for prefix, p in predictions.items():
        metrics[f"{prefix}_mae"] = mae(y_test, p)
        metrics[f"{prefix}_xauc"] = xauc(y_test, p)
    metrics.update(segment_mae(dataset, split.test, predictions))
    metrics.update(preload_effect(dataset, split.test, predictions["test"], policy))
    return metrics, predictions["test"]


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


def _parity_rows(dataset: Dataset, split: TimeSplit, min_test_rows: int, seed: int) -> np.ndarray:
    """Mask of all rows of randomly drawn users with test rows, until they cover ``min_test_rows``."""
    users, test_counts = np.unique(dataset.user_ids[split.test].astype(str), return_counts=True)
    shuffle = np.random.default_rng(seed).permutation(len(users))
    covered = np.cumsum(test_counts[shuffle])
    n_users = min(int(np.searchsorted(covered, min_test_rows)) + 1, len(users))
    return np.isin(dataset.user_ids.astype(str), users[shuffle[:n_users]])


def _log_parity_set(
    table: ViewTable,
    dataset: Dataset,
    split: TimeSplit,
    rows: np.ndarray,
    features: np.ndarray,
    fitted: FittedModel,
) -> int:
    """Write and log the parity set (see the module docstring); returns its row count."""
    with tempfile.TemporaryDirectory(prefix="pitahaya-parity-") as tmp:
        folder = Path(tmp)
        write_events(folder / "views.csv.gz", table.take(dataset.index[rows]))
        np.save(folder / "features.npy", features)
        np.save(folder / "predictions.npy", fitted.predict(features).astype(np.float32))
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
