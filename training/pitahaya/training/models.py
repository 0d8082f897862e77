"""Model families the job can fit, behind one small interface: `FittedModel`.

- ``lightgbm``: `lightgbm.train` with early stopping on the time-ordered valid rows; the
  booster is trimmed to its best iteration so every copy of it predicts the same. Saved
  with ``mlflow.lightgbm`` (the packager converts it with onnxmltools).
- ``sklearn``: `HistGradientBoostingRegressor`, early-stopped on the same valid rows
  (``X_val``/``y_val``, not a random hold-out). Saved with ``mlflow.sklearn`` (the
  packager converts it with skl2onnx).

Hyper-parameters come from the scene's ``[training]`` table in LightGBM's vocabulary and are
translated for scikit-learn (`SKLEARN_PARAMS`), so one scene config drives both.

A scene with ``[scene] quantiles`` also gets one *head* per level (`fit_heads`): the same family
trained with the quantile (pinball) loss at that level. `FittedModel.save` writes each head as
its own MLflow model under ``quantiles/<repr(level)>`` of the point model's folder and lists the
levels in the point model's metadata (`QUANTILES_METADATA`); `load_heads` reads them back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow.lightgbm
import mlflow.sklearn
import numpy as np
import pandas as pd
import sklearn
from mlflow.models import Model, infer_signature
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance

from pitahaya.client_runtime import QUANTILES_DIR, QUANTILES_METADATA
from pitahaya.training.config import ModelFamily

#: Name of the logged model within the run.
MODEL_NAME = "model"
#: LightGBM parameter -> HistGradientBoostingRegressor parameter.
SKLEARN_PARAMS = {
    "learning_rate": "learning_rate",
    "num_leaves": "max_leaf_nodes",
    "min_child_samples": "min_samples_leaf",
    "max_depth": "max_depth",
    "lambda_l2": "l2_regularization",
}
#: LightGBM objective -> scikit-learn loss.
SKLEARN_LOSS = {"regression_l1": "absolute_error", "l1": "absolute_error", "regression": "squared_error"}


@dataclass
class FittedModel:
    """A fitted model with what the run logs about it.

    Attributes:
        flavor: ``lightgbm`` or ``sklearn`` (the run tag ``pitahaya.model_flavor``).
        model: The `lgb.Booster` or fitted estimator.
        best_iteration: Boosting rounds kept.
        valid_curve: Validation MAE after each round (of the early-stopped fit).
        params: The parameters it was fitted with (logged as run params).
        refit: Whether ``model`` was fit again on the train and valid rows at ``best_iteration``
            rounds (`refit_lightgbm`, `refit_sklearn`); then its own valid MAE is in-sample and
            the honest one is the early-stopped fit's, ``valid_curve[best_iteration - 1]``.
        heads: ``(level, model)`` per quantile level of the scene, increasing (`fit_heads`);
            empty when the scene asks for the point prediction only.
    """

    flavor: ModelFamily
    model: Any
    best_iteration: int
    valid_curve: list[float]
    params: dict[str, Any] = field(default_factory=dict)
    refit: bool = False
    heads: tuple[tuple[float, Any], ...] = ()

    @property
    def levels(self) -> tuple[float, ...]:
        """The quantile levels of the heads, increasing."""
        return tuple(level for level, _ in self.heads)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(X), dtype=np.float64)

    def predict_outputs(self, X: np.ndarray) -> np.ndarray:
        """Shape ``(rows, 1 + len(heads))``: the point prediction, then each head's, in level order."""
        return np.column_stack([self.predict(X), *(np.asarray(h.predict(X), dtype=np.float64) for _, h in self.heads)])

    def importance(self, feature_names: tuple[str, ...], X_valid: np.ndarray, y_valid: np.ndarray) -> pd.DataFrame:
        """Per-feature importance, most useful first (gain for LightGBM, permutation MAE otherwise)."""
        if self.flavor == "lightgbm":
            table = pd.DataFrame(
                {
                    "feature": list(feature_names),
                    "gain": self.model.feature_importance("gain"),
                    "split": self.model.feature_importance("split"),
                }
            )
            return table.sort_values("gain", ascending=False, ignore_index=True)
        sample = np.random.default_rng(0).permutation(len(y_valid))[:2_000]
        result = permutation_importance(
            self.model, X_valid[sample], y_valid[sample], scoring="neg_mean_absolute_error", n_repeats=2, random_state=0
        )
        table = pd.DataFrame({"feature": list(feature_names), "gain": result.importances_mean})
        return table.sort_values("gain", ascending=False, ignore_index=True)

    def save(self, path: Path, mlflow_model: Model, example: pd.DataFrame) -> None:
        """Save as an MLflow model with its flavor's ``save_model``, with a signature and input example.

        Each head becomes its own MLflow model of the same flavor in ``path/quantiles/<repr(level)>``
        (a signature, no input example: the point model's serves), and the point model's metadata
        lists the levels under `QUANTILES_METADATA`, so a reader of the point model finds them
        (`load_heads`). Without heads the folder is the point model alone, as before heads existed.

        Args:
            path: Folder to create.
            mlflow_model: The model's MLflow metadata (ids of its LoggedModel and run).
            example: A few feature rows (named columns): the input example and the signature's input.
        """
        pins = [f"numpy=={np.__version__}", f"pandas=={pd.__version__}"]
        # Requirements are pinned, not inferred: inference imports the model in a subprocess (~10 s).
        if self.flavor == "lightgbm":
            save, library, options = mlflow.lightgbm.save_model, f"lightgbm=={lgb.__version__}", {}
        else:
            # MLflow's default (skops) rejects HistGradientBoostingRegressor's internal loss
            # objects; the run is our own trusted output, so cloudpickle it.
            save, library = mlflow.sklearn.save_model, f"scikit-learn=={sklearn.__version__}"
            options = {"serialization_format": "cloudpickle"}
        X = example.to_numpy()
        save(
            self.model,
            str(path),
            mlflow_model=mlflow_model,
            signature=infer_signature(example, self.predict(X)),
            input_example=example,
            pip_requirements=[library, *pins],
            metadata={QUANTILES_METADATA: list(self.levels)} if self.heads else None,
            **options,
        )
        for level, head in self.heads:
            save(
                head,
                str(path / QUANTILES_DIR / repr(level)),
                signature=infer_signature(example, np.asarray(head.predict(X), dtype=np.float64)),
                pip_requirements=[library, *pins],
                **options,
            )


def fit_lightgbm(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    feature_names: tuple[str, ...],
    params: Mapping[str, Any],
    rounds: int,
    patience: int,
    progress: Callable[[float], None],
) -> FittedModel:
    """Fit LightGBM with early stopping; the booster is cut to its best iteration."""
    train_set = lgb.Dataset(X_train, y_train, feature_name=list(feature_names), free_raw_data=False)
    valid_set = lgb.Dataset(X_valid, y_valid, reference=train_set)
    history: dict[str, Any] = {}

    def report(env: lgb.callback.CallbackEnv) -> None:
        progress((env.iteration + 1) / rounds)

    booster = lgb.train(
        dict(params),
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(patience, verbose=False), lgb.record_evaluation(history), report],
    )
    progress(1.0)
    best = booster.best_iteration or booster.current_iteration()
    curve = [float(v) for v in history["valid"]["l1"]]
    return trimmed_lightgbm(booster, best, curve)


def trimmed_lightgbm(booster: lgb.Booster, best: int, curve: list[float]) -> FittedModel:
    """A LightGBM model keeping the first ``best`` rounds of ``booster``."""
    return FittedModel("lightgbm", lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best, curve)


def refit_lightgbm(
    early: FittedModel, X: np.ndarray, y: np.ndarray, *, feature_names: tuple[str, ...], params: Mapping[str, Any]
) -> FittedModel:
    """LightGBM fit again on ``X``, ``y`` (train and valid rows) for the rounds ``early`` stopped at.

    `fit_heads` also fits each head with it, on ``quantile_params``.
    """
    data = lgb.Dataset(X, y, feature_name=list(feature_names))
    booster = lgb.train(dict(params), data, num_boost_round=early.best_iteration)
    return FittedModel("lightgbm", booster, early.best_iteration, early.valid_curve, refit=True)


def sklearn_params(params: Mapping[str, Any], rounds: int, patience: int, seed: int) -> dict[str, Any]:
    """HistGradientBoostingRegressor parameters equivalent to LightGBM ``params``."""
    translated = {SKLEARN_PARAMS[k]: v for k, v in params.items() if k in SKLEARN_PARAMS}
    translated.update(
        loss=SKLEARN_LOSS.get(str(params.get("objective", "regression_l1")), "absolute_error"),
        max_iter=rounds,
        early_stopping=True,
        n_iter_no_change=patience,
        scoring="neg_mean_absolute_error",
        random_state=seed,
    )
    return translated


def fit_sklearn(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    params: Mapping[str, Any],
    progress: Callable[[float], None],
) -> FittedModel:
    """Fit HistGradientBoostingRegressor, early-stopped on the given (time-ordered) valid rows."""
    progress(0.0)
    model = HistGradientBoostingRegressor(**params)
    model.fit(X_train, y_train, X_val=X_valid, y_val=y_valid)
    progress(1.0)
    curve = [float(-s) for s in model.validation_score_[1:]]  # scores are negated MAE; [0] is before round 1
    return FittedModel("sklearn", model, int(model.n_iter_), curve)


def refit_sklearn(early: FittedModel, X: np.ndarray, y: np.ndarray, **overrides: Any) -> FittedModel:
    """The estimator of ``early`` fit again on ``X``, ``y`` for the iterations it stopped at, without a hold-out.

    Args:
        overrides: Estimator parameters to change besides (`fit_heads`: the quantile loss).
    """
    model = clone(early.model).set_params(max_iter=early.best_iteration, early_stopping=False, **overrides)
    model.fit(X, y)
    return FittedModel("sklearn", model, early.best_iteration, early.valid_curve, refit=True)


def quantile_params(params: Mapping[str, Any], level: float) -> dict[str, Any]:
    """LightGBM ``params`` with the quantile (pinball) loss at ``level``, for a head."""
    return {**params, "objective": "quantile", "alpha": level, "metric": "quantile"}


def fit_heads(
    point: FittedModel,
    X: np.ndarray,
    y: np.ndarray,
    levels: tuple[float, ...],
    *,
    feature_names: tuple[str, ...],
    params: Mapping[str, Any],
) -> tuple[tuple[float, Any], ...]:
    """One quantile head per level: ``point``'s family and settings with the quantile loss at that level.

    Pass the rows ``point`` was fit on (train and valid when it was refit, else train). Each head
    trains for ``point.best_iteration`` rounds, with no early stopping of its own: one
    early-stopping run per head would multiply training time, and the heads are judged on the
    test rows anyway (``test_pinball_q*``, ``test_coverage_q*``, `evaluation.quantile_metrics`).

    Args:
        params: The LightGBM parameters ``point`` was fit with (unused for scikit-learn, whose
            estimator carries its own).
    """
    if point.flavor == "lightgbm":
        return tuple(
            (
                level,
                refit_lightgbm(point, X, y, feature_names=feature_names, params=quantile_params(params, level)).model,
            )
            for level in levels
        )
    return tuple((level, refit_sklearn(point, X, y, loss="quantile", quantile=level).model) for level in levels)


def load_heads(folder: Path) -> tuple[tuple[float, Any], ...]:
    """The ``(level, model)`` heads saved by `FittedModel.save` in the MLflow model ``folder`` (none: ``()``)."""
    saved = Model.load(folder)
    flavor = mlflow.lightgbm if "lightgbm" in saved.flavors else mlflow.sklearn
    levels = (saved.metadata or {}).get(QUANTILES_METADATA, [])
    return tuple((level, flavor.load_model(str(folder / QUANTILES_DIR / repr(level)))) for level in levels)
