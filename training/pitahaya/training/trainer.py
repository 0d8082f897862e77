"""The training job: event logs in, one evaluated model and its MLflow run out.

`train` runs these stages, reporting each to the optional ``progress(stage, fraction)``:

1. ``events``: read and validate the event logs (`load_events`: CSV / TSV / JSONL / Parquet,
   local, glob or S3, through an adapter; bad rows quarantined), or generate a log; then give
   each view the item figures a feed server would have served with it (`ViewTable.with_item_stats`).
2. ``features``: build the feature matrix with the scene's batch module (logs of at least
   ``batch_min_rows`` views, when ``scene.toml`` names one; see `batch_features`) or the
   scene's streaming extractor, locally or on Dask workers; split rows by time into train /
   valid / test; then replay the parity users through the streaming extractor and refuse to
   train (`FeatureMismatchError`) if the batch features differ.
3. ``train``: LightGBM (scene ``[training]`` parameters, overridable; early stopping on the
   valid rows; deterministic, ``num_threads`` threads; or `lightgbm.dask` with
   ``engine="dask"``), or scikit-learn's HistGradientBoostingRegressor (``model="sklearn"``;
   see `fitting`).
4. ``evaluate``: MAE and XAUC of the model and of the baselines on the test rows, MAE per
   segment, and the preload effect against the fixed policy (see `evaluation`).
5. ``log``: one MLflow run in the experiment named after the scene, written through an
   explicit client (MLflow's process-wide tracking URI is never changed; see `tracking`):

   - params: model parameters, data source, adapter, feature path, engine, split sizes,
     ``dataset_digest``;
   - metrics: ``test_mae``, ``test_xauc``, ``valid_mae``, ``baseline_*_mae`` / ``_xauc``,
     ``*_mae_<segment>``, ``preload_*``, ``rows_read``, ``bad_rows`` and
     ``bad_rows_<reason>``, ``best_iteration`` and the ``valid_l1`` learning curve; with
     quantile heads, ``test_pinball_q<pct>``, ``test_coverage_q<pct>`` and
     ``test_quantile_crossing`` (and the param ``quantiles``);
   - tags: ``pitahaya.scene``, ``pitahaya.code_version`` (git sha), ``pitahaya.dataset_digest``,
     ``pitahaya.model_uri``, ``pitahaya.model_flavor``, ``pitahaya.features_path``;
   - the model (``mlflow.lightgbm`` or ``mlflow.sklearn``, name ``model``, with signature and
     input example; its quantile heads under ``quantiles/<level>``, see `FittedModel.save`) and
     the training matrix as an MLflow dataset (with its digest);
   - artifacts: ``scene/features.py``, ``scene/scene.toml`` and (when the scene has one)
     ``scene/batch_features.py`` exactly as used, ``feature_importance.json``,
     ``plots/feature_importance.png``, ``plots/predicted_vs_actual.png``, the quarantine file
     under ``quarantine/`` (when rows were rejected), and the parity set under ``parity/``.

The parity set is the contract with the packager, which must not import this package: the
full, time-ordered streams of held-out users covering at least ``parity_min_test_rows`` test
rows, the float32 features of every one of those rows as the scene's streaming extractor
computes them, and the model's float32 predictions on them (with quantile heads, one column
per output: the point, then each level), written by
`pitahaya.client_runtime.ParitySet` (the packager reads it back with the same class).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from pitahaya.client_runtime import FeatureExtractor, ParitySet, Scene
from pitahaya.training import tracking
from pitahaya.training.batch_features import build_matrix_batch, verify_batch_features
from pitahaya.training.config import Progress, TrainConfig, TrainResult
from pitahaya.training.dataset import Dataset, TimeSplit, build_matrix, split_by_time, stream_features
from pitahaya.training.distributed import dask_client, featurize_on_workers
from pitahaya.training.errors import TrainingError
from pitahaya.training.evaluation import evaluate
from pitahaya.training.eventlog import LoadReport, load_events
from pitahaya.training.fitting import fit_model
from pitahaya.training.generator import GeneratorConfig, generate_table
from pitahaya.training.models import FittedModel
from pitahaya.training.table import ViewTable


def train(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train, evaluate and log one model for a scene.

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
        table = table.with_item_stats()  # over every user's views, before any split
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
            fitted = fit_model(config, scene, dataset, split, distributed, client, lambda f: report("train", f))

        report("evaluate", 0.0)
        metrics, test_predictions = evaluate(fitted, dataset, split, scene.policy)
        metrics.update(_load_metrics(loaded))
        report("evaluate", 1.0)

        report("log", 0.0)
        digest = tracking.dataset_digest(dataset)
        tags = {
            "pitahaya.scene": scene.name,
            "pitahaya.dataset_digest": digest,
            "pitahaya.model_flavor": fitted.flavor,
            "pitahaya.features_path": features_path,
        }
        code_version = tracking.git_sha(scene.path)
        if code_version:
            tags["pitahaya.code_version"] = code_version
        # With heads, one column per output (point, then each level), as the package's model answers.
        parity_outputs = fitted.predict_outputs(parity_X) if fitted.heads else fitted.predict(parity_X)
        parity_set = ParitySet(table.views(dataset.index[parity]), parity_X, parity_outputs.astype(np.float32))
        metrics["parity_rows"] = float(len(parity_set))
        mlflow_client = mlflow.MlflowClient(tracking_uri=config.tracking_uri)
        experiment_id = tracking.ensure_experiment(mlflow_client, scene.name, config.artifact_location)
        with tracking.training_run(mlflow_client, experiment_id, run_name=config.run_name, tags=tags) as run_id:
            tracking.log_params(
                mlflow_client, run_id, _run_params(config, fitted, split, dataset, source, digest, features_path)
            )
            tracking.log_training_data(
                mlflow_client,
                run_id,
                name=scene.name,
                X=dataset.X[split.train],
                y=dataset.y[split.train],
                source=_source_uri(config),
                digest=digest,
            )
            report("log", 0.2)
            example = pd.DataFrame(dataset.X[:5], columns=list(dataset.feature_names))
            model_id = tracking.log_model(mlflow_client, run_id, experiment_id, fitted, example)
            model_uri = f"models:/{model_id}"
            tracking.log_metrics(
                mlflow_client, run_id, metrics, model_id=model_id, curves={"valid_l1": fitted.valid_curve}
            )
            mlflow_client.set_tag(run_id, "pitahaya.model_uri", model_uri)
            tracking.log_scene(mlflow_client, run_id, scene)
            importance = fitted.importance(dataset.feature_names, dataset.X[split.valid], dataset.y[split.valid])
            mlflow_client.log_table(run_id, importance, artifact_file="feature_importance.json")
            tracking.log_figures(mlflow_client, run_id, importance, dataset.y[split.test], test_predictions)
            if loaded.quarantine_path:
                mlflow_client.log_artifact(run_id, loaded.quarantine_path, artifact_path="quarantine")
            report("log", 0.6)
            tracking.log_parity_set(mlflow_client, run_id, parity_set)
    report("log", 1.0)

    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=model_uri,
        metrics=metrics,
        feature_names=dataset.feature_names,
        best_iteration=fitted.best_iteration,
        n_train=int(split.train.sum()),
        n_valid=int(split.valid.sum()),
        n_test=int(split.test.sum()),
        n_parity_rows=len(parity_set),
        dataset_digest=digest,
        test_from=split.test_from,
        elapsed_s=time.monotonic() - started,
        model_flavor=fitted.flavor,
        features_path=features_path,
        bad_rows=dict(loaded.bad_rows),
        quarantine_path=str(config.quarantine_path) if config.quarantine_path and loaded.quarantine_path else None,
    )


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

    has_batch = scene.batch_feature_source is not None
    if config.features == "batch" and not has_batch:
        raise ValueError(f"scene {scene.name!r} names no batch_features module; use features 'stream' or 'auto'")
    if client is not None:
        on_progress(0.0)
        distributed, dataset = featurize_on_workers(client, table, scene)
        return dataset, "dask-batch" if has_batch else "dask-stream", distributed
    use_batch = config.features == "batch" or (
        config.features == "auto" and has_batch and len(table) >= config.batch_min_rows
    )
    if use_batch:
        return build_matrix_batch(table, scene, on_progress), "batch", None
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
        "refit": config.refit,
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
    if fitted.heads:
        run_params["quantiles"] = ",".join(repr(level) for level in fitted.levels)
    if config.events is None:
        run_params.update({f"generator.{k}": v for k, v in asdict(_generator(config)).items()})
    return run_params


def _source_uri(config: TrainConfig) -> str | None:
    """Where the event logs came from, as the dataset source URI (None for a generated log)."""
    if config.events is None:
        return None
    spec = str(config.events)
    return spec if spec.startswith("s3://") else Path(spec).resolve().as_uri()


def _generator(config: TrainConfig) -> GeneratorConfig:
    """What to generate when the config names no event log."""
    return config.generator or GeneratorConfig(seed=config.seed)


def _parity_rows(dataset: Dataset, split: TimeSplit, min_test_rows: int, seed: int) -> np.ndarray:
    """Mask of all rows of randomly drawn users with test rows, until they cover ``min_test_rows``."""
    users, test_counts = np.unique(dataset.user_ids[split.test].astype(str), return_counts=True)
    shuffle = np.random.default_rng(seed).permutation(len(users))
    covered = np.cumsum(test_counts[shuffle])
    n_users = min(int(np.searchsorted(covered, min_test_rows)) + 1, len(users))
    return np.isin(dataset.user_ids.astype(str), users[shuffle[:n_users]])
