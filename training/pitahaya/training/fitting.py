"""The fit: the model family's parameters from the scene and the job, then one fit, locally or on Dask.

Parameters start from the scene's ``[training]`` table (LightGBM names), are overridden by
``TrainConfig.params``, and get the job's fixed knobs (seed, threads, determinism). The
number of boosting rounds is the scene key `ROUNDS_KEY`. scikit-learn gets the same
parameters translated (`sklearn_params`). Every family early-stops on the valid rows, then
(``TrainConfig.refit``, the default) fits again on the train and valid rows together for the
number of rounds early stopping picked: the valid period is the most recent one before the test
period, the one most like what devices will see. A scene with ``quantiles`` then gets one
quantile head per level, fit on the same rows for the same rounds (`fit_heads`; on Dask,
`fit_lightgbm_dask`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pitahaya.client_runtime import Scene
from pitahaya.training.config import TrainConfig
from pitahaya.training.dataset import Dataset, TimeSplit
from pitahaya.training.distributed import fit_lightgbm_dask
from pitahaya.training.models import (
    FittedModel,
    fit_heads,
    fit_lightgbm,
    fit_sklearn,
    refit_lightgbm,
    refit_sklearn,
    sklearn_params,
)

#: Scene ``[training]`` key holding the number of boosting rounds (a `lgb.train` argument).
ROUNDS_KEY = "n_estimators"


def lightgbm_params(scene: Scene, config: TrainConfig) -> tuple[dict[str, Any], int]:
    """LightGBM parameters (scene defaults, then overrides, then the job's fixed knobs) and rounds."""
    params = {**scene.training, **config.params}
    rounds = int(params.pop(ROUNDS_KEY, 200))
    params.update(
        metric="l1",
        num_threads=config.num_threads,
        seed=config.seed,
        deterministic=True,
        force_row_wise=True,  # `deterministic` also needs one fixed histogram layout
        verbosity=-1,
    )
    return params, rounds


def fit_model(
    config: TrainConfig,
    scene: Scene,
    dataset: Dataset,
    split: TimeSplit,
    distributed: Any,
    client: Any,
    progress: Callable[[float], None],
) -> FittedModel:
    """Fit the configured model family on the train rows, early-stopped on the valid rows (then refit).

    Then, when the scene has ``quantiles``, one head per level on the rows the point model was
    finally fit on (`fit_heads`).

    Args:
        distributed: With a Dask ``client``, the features left on the workers.
        client: A Dask client, or None to fit in this process.
    """
    params, rounds = lightgbm_params(scene, config)
    logged = {**params, ROUNDS_KEY: rounds}  # the run's params: lgb.train takes the rounds apart
    patience = config.early_stopping_rounds
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
            refit=config.refit,
            quantiles=scene.quantiles,
        )
        fitted.params = logged
        return fitted
    final = split.train | split.valid if config.refit else split.train
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
        if config.refit:
            fitted = refit_sklearn(fitted, dataset.X[final], dataset.y[final])
        fitted.params = translated
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
        if config.refit:
            fitted = refit_lightgbm(
                fitted, dataset.X[final], dataset.y[final], feature_names=dataset.feature_names, params=params
            )
        fitted.params = logged
    if scene.quantiles:
        fitted.heads = fit_heads(
            fitted,
            dataset.X[final],
            dataset.y[final],
            scene.quantiles,
            feature_names=dataset.feature_names,
            params=params,
        )
    return fitted
