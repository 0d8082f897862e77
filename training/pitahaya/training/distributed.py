"""The Dask engine: featurize on the workers, train with `lightgbm.dask`.

Views are shuffled so that each partition holds *whole users* (features are per-user
streams); every worker loads the scene's code from its source text (the `Scene` travels with
the task) and featurizes its partitions with the scene's batch module (or the streaming
extractor when the scene has none). Training rows stay on the workers for `DaskLGBMRegressor`; the client then gathers
the feature matrix once, for evaluation, the streaming check and the parity set.

`lightgbm.dask` has no early stopping, so the full ``rounds`` are trained with the valid
rows as ``eval_set`` and the booster is cut where early stopping would have stopped (the
same rule as `lgb.early_stopping`: best valid MAE, stop after ``patience`` rounds without
improvement). The refit and the quantile heads train on the workers too, for that many rounds,
as the local engine does (`pitahaya.training.models.fit_heads`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from pitahaya.client_runtime import ITEM_FIELDS, Scene
from pitahaya.training.batch_features import build_matrix_batch
from pitahaya.training.dataset import Dataset, build_matrix, make_dataset, stream_order
from pitahaya.training.models import FittedModel, quantile_params, trimmed_lightgbm
from pitahaya.training.table import ViewTable

#: Workers (processes, one thread each) of the LocalCluster started when no scheduler is given.
LOCAL_WORKERS = 2
_FIELDS = ("user_id", "video_id", "start_ts", "duration_s", "watch_s", "size_bytes")
#: Column names of the item figures in the frame sent to the workers.
_ITEM_COLUMNS = [f"item{j}" for j in range(len(ITEM_FIELDS))]


@contextmanager
def dask_client(scheduler: str | None, n_workers: int = LOCAL_WORKERS) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a new LocalCluster on 127.0.0.1."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _featurize_partition(part: pd.DataFrame, scene: Scene, names: tuple[str, ...]) -> pd.DataFrame:
    """Runs on a worker: the feature rows of one partition of whole users."""
    table = ViewTable(
        part["user_id"].to_numpy(dtype=object),
        part["video_id"].to_numpy(dtype=object),
        part["start_ts"].to_numpy(dtype=np.float64),
        part["duration_s"].to_numpy(dtype=np.float64),
        part["watch_s"].to_numpy(dtype=np.float64),
        part["size_bytes"].to_numpy(dtype=np.int64),
        part[_ITEM_COLUMNS].to_numpy(dtype=np.float64),
    )
    if scene.batch_feature_source is not None:
        dataset = build_matrix_batch(table, scene)
    else:
        dataset = build_matrix(table, scene.extractor_class())
    out = pd.DataFrame(dataset.X, columns=list(names))
    out["row"] = part["row"].to_numpy()[dataset.index]
    out["start_ts"] = dataset.start_ts
    out["y"] = dataset.y
    return out


def featurize_on_workers(
    client: Any, table: ViewTable, scene: Scene, *, partitions: int | None = None
) -> tuple[Any, Dataset]:
    """Featurize ``table`` on the cluster with ``scene``'s code.

    Returns:
        The persisted dask frame of features (columns: the feature names, ``row``,
        ``start_ts``, ``y``) and the same rows gathered as a `Dataset` in `stream_order`.
    """
    import dask.dataframe as dd

    names = tuple(scene.extractor_class().feature_names)

    n_parts = partitions or max(2 * len(client.scheduler_info()["workers"]), 1)
    frame = pd.DataFrame({f: getattr(table, f) for f in _FIELDS})
    frame[_ITEM_COLUMNS] = table.item_matrix()  # computed over the whole log, before the shuffle by user
    frame["row"] = np.arange(len(table))
    views = dd.from_pandas(frame, npartitions=n_parts, sort=False).shuffle(on="user_id", npartitions=n_parts)
    meta = pd.DataFrame({**{n: pd.Series(dtype=np.float32) for n in names}, "row": pd.Series(dtype=np.int64)})
    meta["start_ts"] = pd.Series(dtype=np.float64)
    meta["y"] = pd.Series(dtype=np.float64)
    features = views.map_partitions(_featurize_partition, scene, names, meta=meta).persist()
    gathered = features.compute()
    order = stream_order(table)
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    X = np.empty((len(table), len(names)), dtype=np.float32)
    X[position[gathered["row"].to_numpy()]] = gathered[list(names)].to_numpy(dtype=np.float32)
    return features, make_dataset(table, order, X, names)


def fit_lightgbm_dask(
    client: Any,
    features: Any,
    *,
    names: tuple[str, ...],
    valid_from: float,
    test_from: float,
    params: Mapping[str, Any],
    rounds: int,
    patience: int,
    progress: Callable[[float], None],
    refit: bool = True,
    quantiles: tuple[float, ...] = (),
) -> FittedModel:
    """Train `DaskLGBMRegressor` on the workers' train rows; cut at the early-stopping point.

    With ``refit``, train again on the train and valid rows for that many rounds (`fit_model`).
    Each of ``quantiles`` gets a head trained on the same rows as the final model, for the same
    rounds, with the quantile loss (no early stopping of its own: see `fit_heads`).
    """
    from lightgbm.dask import DaskLGBMRegressor

    train = features[features["start_ts"] < valid_from]
    valid = features[(features["start_ts"] >= valid_from) & (features["start_ts"] < test_from)]
    progress(0.0)
    # Each worker trains with its own thread count (one per Dask thread); num_threads is not ours to set.
    worker_params = {k: v for k, v in params.items() if k != "num_threads"}
    model = DaskLGBMRegressor(client=client, n_estimators=rounds, **worker_params)
    model.fit(train[list(names)], train["y"], eval_X=(valid[list(names)],), eval_y=(valid["y"],), eval_metric="l1")
    progress(1.0)
    curve = [float(v) for v in model.evals_result_["valid_0"]["l1"]]
    fitted = trimmed_lightgbm(model.booster_, early_stopping_point(curve, patience), curve)
    final_rows = features[features["start_ts"] < test_from] if refit else train

    def fit_rows(fit_params: Mapping[str, Any]) -> Any:
        """A booster trained on ``final_rows`` for the early-stopped rounds."""
        regressor = DaskLGBMRegressor(client=client, **{**fit_params, "n_estimators": fitted.best_iteration})
        regressor.fit(final_rows[list(names)], final_rows["y"])
        return regressor.booster_

    if refit:
        fitted = FittedModel("lightgbm", fit_rows(worker_params), fitted.best_iteration, curve, refit=True)
    fitted.heads = tuple((level, fit_rows(quantile_params(worker_params, level))) for level in quantiles)
    return fitted


def early_stopping_point(curve: list[float], patience: int) -> int:
    """Rounds `lgb.early_stopping` would keep: the best round before ``patience`` rounds without improvement."""
    best, best_round = float("inf"), 0
    for i, value in enumerate(curve):
        if value < best:
            best, best_round = value, i
        elif i - best_round >= patience:
            break
    return best_round + 1
