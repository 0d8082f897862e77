"""The training run in MLflow, written through one explicit client.

MLflow's fluent API (``mlflow.start_run``, ``mlflow.log_*``, ``mlflow.<flavor>.log_model``)
reads the process-wide tracking URI: a library that set it for its own run would redirect
every later MLflow call of the process that imported it (and export ``MLFLOW_TRACKING_URI``
to its children). So nothing here touches it: every call goes through the
`mlflow.MlflowClient` the caller built for ``TrainConfig.tracking_uri``.

What MLflow users see is what the fluent API would have made:

- `training_run` creates the run with MLflow's context tags (``mlflow.user``,
  ``mlflow.source.*``, git) resolved by its run-context registry, as ``mlflow.start_run``
  does, and ends it ``FINISHED`` (``FAILED`` when the block raises);
- `log_model` logs the model as ``Model.log`` does, with public client calls: a LoggedModel
  named `MODEL_NAME` with the run's params and the context tags, recorded as the run's output
  at step 0, saved by the flavor's ``save_model`` and uploaded, then marked ``READY``
  (``FAILED`` if anything raises); its URI is ``models:/<model_id>``;
- `log_metrics` links metrics logged at the model's step to the model, so the LoggedModel
  shows the run's figures as it does after ``log_model``.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.numpy_dataset import from_numpy
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag, LoggedModelOutput, LoggedModelStatus, Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from pitahaya.client_runtime import PARITY_DIR, ParitySet, Scene
from pitahaya.training.dataset import Dataset
from pitahaya.training.evaluation import importance_figure, predicted_vs_actual_figure
from pitahaya.training.models import MODEL_NAME, FittedModel

#: Step the model is logged at; metrics at this step are the model's metrics too.
MODEL_STEP = 0


def ensure_experiment(client: mlflow.MlflowClient, name: str, artifact_location: str | Path | None) -> str:
    """Id of the experiment named ``name``, created with ``artifact_location`` if missing."""
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
        found = client.get_experiment_by_name(name)
        if e.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS) or found is None:
            raise
        return found.experiment_id


@contextmanager
def training_run(
    client: mlflow.MlflowClient, experiment_id: str, *, run_name: str | None, tags: Mapping[str, str]
) -> Iterator[str]:
    """A new run (its id) with ``tags`` over MLflow's context tags; ended when the block ends."""
    run = client.create_run(experiment_id, tags=resolve_tags(dict(tags)), run_name=run_name)
    run_id = run.info.run_id
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))


def log_params(client: mlflow.MlflowClient, run_id: str, params: Mapping[str, object]) -> None:
    """Log run params (values as strings, as ``mlflow.log_params`` does)."""
    client.log_batch(run_id, params=[Param(key, str(value)) for key, value in params.items()])


def log_metrics(
    client: mlflow.MlflowClient,
    run_id: str,
    metrics: Mapping[str, float],
    *,
    model_id: str | None,
    curves: Mapping[str, Sequence[float]] | None = None,
) -> None:
    """Log scalar metrics (at `MODEL_STEP`) and per-step curves (timestamp 0, step = index).

    Metrics at `MODEL_STEP` carry ``model_id``, so the logged model shows them too.
    """
    now = int(time.time() * 1000)
    batch = [Metric(key, value, now, MODEL_STEP, model_id=model_id) for key, value in metrics.items()]
    for key, values in (curves or {}).items():
        batch += [
            Metric(key, value, 0, step, model_id=model_id if step == MODEL_STEP else None)
            for step, value in enumerate(values)
        ]
    client.log_batch(run_id, metrics=batch)


def log_model(
    client: mlflow.MlflowClient, run_id: str, experiment_id: str, fitted: FittedModel, example: pd.DataFrame
) -> str:
    """Log ``fitted`` as the run's model (see the module docstring); returns its model id."""
    model = client.create_logged_model(
        experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags=resolve_tags(),
        params=dict(client.get_run(run_id).data.params),
    )
    try:
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=MODEL_STEP)])
        mlflow_model = Model(
            artifact_path=model.artifact_location, model_uuid=model.model_id, run_id=run_id, model_id=model.model_id
        )
        with tempfile.TemporaryDirectory(prefix="pitahaya-model-") as tmp:
            local = Path(tmp) / MODEL_NAME
            fitted.save(local, mlflow_model, example)
            client.log_model_artifacts(model.model_id, str(local))
    except BaseException:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id


def log_training_data(
    client: mlflow.MlflowClient,
    run_id: str,
    *,
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    source: str | None,
    digest: str,
) -> None:
    """Record the training matrix as the run's MLflow dataset input (shape, schema, digest, source)."""
    with warnings.catch_warnings():  # MLflow registers its local source class twice, then warns
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        # MLflow annotates source without the None its default and its docstring allow (the calling code).
        data = from_numpy(X, targets=y, source=source, name=name, digest=digest[:16])  # type: ignore[arg-type]
    dataset = DatasetEntity(**data.to_dict())  # what mlflow.log_input records
    client.log_inputs(run_id, [DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])])


def log_figures(
    client: mlflow.MlflowClient, run_id: str, importance: pd.DataFrame, y_test: np.ndarray, p_test: np.ndarray
) -> None:
    """Feature importance and predicted-vs-actual, as PNG artifacts under ``plots/``."""
    import matplotlib.pyplot as plt

    for figure, name in (
        (importance_figure(importance), "plots/feature_importance.png"),
        (predicted_vs_actual_figure(y_test, p_test), "plots/predicted_vs_actual.png"),
    ):
        client.log_figure(run_id, figure, name)
        plt.close(figure)


def log_scene(client: mlflow.MlflowClient, run_id: str, scene: Scene) -> None:
    """The scene's files exactly as used, under ``scene/``."""
    client.log_text(run_id, scene.feature_source, "scene/features.py")
    client.log_text(run_id, (scene.path / "scene.toml").read_text(), "scene/scene.toml")
    if scene.batch_feature_source is not None:
        client.log_text(run_id, scene.batch_feature_source, "scene/batch_features.py")


def log_parity_set(client: mlflow.MlflowClient, run_id: str, parity: ParitySet) -> None:
    """Log the parity set (`pitahaya.client_runtime.parity_set`) under `PARITY_DIR`."""
    with tempfile.TemporaryDirectory(prefix="pitahaya-parity-") as tmp:
        parity.write(Path(tmp))
        client.log_artifacts(run_id, tmp, artifact_path=PARITY_DIR)


def dataset_digest(dataset: Dataset) -> str:
    """sha256 of the feature matrix and the labels, identifying the training data."""
    sha = hashlib.sha256()
    sha.update(np.ascontiguousarray(dataset.X).tobytes())
    sha.update(np.ascontiguousarray(dataset.y).tobytes())
    return sha.hexdigest()


def git_sha(folder: Path) -> str | None:
    """Commit of the git checkout holding ``folder``, or None outside git."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
