"""Build an algorithm package from an MLflow training run.

Workflow of `build_package`:

0. **lint**: the scene's ``features.py`` against the feature-code rules (`check_feature_code`),
   before anything is downloaded or built.
1. **download**: resolve ``--run`` or ``--model-uri`` (``models:/NAME/VERSION``,
   ``models:/NAME@alias``) to a run and a model; fetch the run's metrics, the model (LightGBM
   or scikit-learn, by its MLflow flavor) and the run's parity set
   (`pitahaya.client_runtime.ParitySet`, under ``parity/``).
2. **convert**: model -> deterministic, compact ONNX (`convert_lightgbm` / `convert_sklearn`).
3. **selftest**: golden cases from the parity views (`build_selftest`).
4. **archive**: manifest + ``model.onnx`` + the scene's CURRENT ``features.py`` +
   ``selftest.json`` -> reproducible ``.tar.xz`` (`build_archive`).
5. **parity**: load the archive with the client runtime and replay every parity view
   (`check_parity`); then the scene's budgets (``[budgets]`` of ``scene.toml``, refusals):
   ``max_package_bytes``, and ``max_decision_cost``, the decision's median time over that of
   a fixed ONNX Runtime yardstick timed beside it (`pitahaya.packaging.latency`): the package's
   cost, which a busy or slow build machine does not move, where a wall-clock budget failed good
   packages on busy machines. ``latency_gate=False`` overrides it (then it is a warning).
6. **write**: ``<out_dir>/<scene>-<version>.tar.xz``, atomically.
7. **register**: log the archive and ``parity_report.json`` to the run under ``package/``
   and register a model version named after the scene, tagged with the package digest (when
   the build started from a version of that registered model, that version is tagged instead).

Shipping the scene's current feature code rather than the copy logged with the run is
deliberate: it is what the parity gate checks, so feature code edited after training is
caught here instead of on devices. Only ``features.py`` ships: a scene's batch feature module
is build-time code (training's fast path, checked against ``features.py``), which no device
runs, so it stays out of the signed package. Nothing is written or registered unless every
check passes.

Every MLflow call goes through one `MlflowClient` built for ``tracking_uri`` (the model is
downloaded by its artifact location, then loaded from the local copy), so building a package
never changes MLflow's process-wide tracking or registry URI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import mlflow.artifacts
import mlflow.lightgbm
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import ALREADY_EXISTS, RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from pitahaya.client_runtime.files import write_atomic
from pitahaya.client_runtime import (
    FEATURES_FILE,
    MODEL_FILE,
    SELFTEST_FILE,
    ClientRuntimeError,
    PARITY_DIR,
    QUANTILES_DIR,
    QUANTILES_METADATA,
    LoadedPackage,
    Manifest,
    ParitySet,
    Scene,
    View,
    build_archive,
    file_entry,
    read_package,
    PolicyKnobs,
    target_path,
    validate_quantiles,
)

from pitahaya.packaging.convert import ConvertedModel, convert_lightgbm, convert_sklearn
from pitahaya.packaging.errors import (
    BudgetError,
    ConversionError,
    PackagingError,
    ParityError,
)
from pitahaya.packaging.lint import check_feature_code
from pitahaya.packaging.parity import ParityReport, check_parity
from pitahaya.packaging.selftest import build_selftest

logger = logging.getLogger("pitahaya.packaging")

#: Name of the training run's model (the training job's contract; its parity set is `PARITY_DIR`).
MODEL_ARTIFACT = "model"
#: Run metrics copied into the manifest: test figures and the baselines they beat.
METRIC_PREFIXES = ("test_", "baseline_")
#: Where the package and its parity report are logged on the training run.
PACKAGE_ARTIFACT_DIR = "package"
PARITY_REPORT_FILE = "parity_report.json"

#: Registry model URIs the packager accepts: ``models:/NAME/VERSION`` and ``models:/NAME@alias``.
_REGISTRY_URI_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[^/@]+))$")
#: The environment variable MLflow reads (and ``mlflow.set_tracking_uri`` writes) the tracking URI from.
_TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
#: URI of an MLflow 3 LoggedModel (``models:/m-<hex>``), the source of a version registered from one.
_LOGGED_MODEL_URI_RE = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)$")

#: The scene budgets the packager enforces (`_check_budgets`).
BUDGETS = frozenset({"max_package_bytes", "max_decision_cost"})
#: Progress callback: ``(stage, fraction of that stage done)``.
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class BuildResult:
    """A package that passed every gate.

    Attributes:
        path: The written archive.
        sha256: Hex digest of the archive (the TUF target hash).
        size_bytes: Archive size.
        manifest: The package's manifest.
        parity: The parity report.
        model_version: Registered MLflow model version, or None when not registered.
        warnings: What a person should look at but no gate refused (a decision cost over the
            scene's budget when the latency gate was overridden).
    """

    path: Path
    sha256: str
    size_bytes: int
    manifest: Manifest
    parity: ParityReport
    model_version: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _ModelSource:
    """Where the model to package comes from.

    Attributes:
        run: The training run (metrics, parity set, where the package is logged).
        model_uri: The model's MLflow URI: ``models:/<model_id>`` for an MLflow 3 LoggedModel,
            ``runs:/<run_id>/model`` for a model logged by MLflow 2 (what a new model version
            records as its source).
        artifact_uri: Where the model's files are (what is downloaded).
        model_id: The LoggedModel's id, or None for an MLflow 2 model.
        registered: ``(name, version)`` when the build started from a registered model version.
    """

    run: Run
    model_uri: str
    artifact_uri: str
    model_id: str | None = None
    registered: tuple[str, str] | None = None


def _run_model(client: MlflowClient, run: Run) -> _ModelSource:
    """The run's model: its MLflow 3 LoggedModel when there is one, else the run's ``model/`` folder.

    MLflow 3 keeps models as LoggedModels outside the run's artifacts; models logged by
    MLflow 2 live in the run's artifacts.
    """
    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{MODEL_ARTIFACT}'",
        max_results=1,
    )
    if logged:
        return _ModelSource(run, logged[0].model_uri, logged[0].artifact_location, logged[0].model_id)
    return _ModelSource(run, f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}", f"{run.info.artifact_uri}/{MODEL_ARTIFACT}")


def _resolve_source(client: MlflowClient, run_id: str | None, model_uri: str | None) -> _ModelSource:
    """The run and model named by exactly one of ``run_id`` and ``model_uri``."""
    if (run_id is None) == (model_uri is None):
        raise ValueError("pass exactly one of run_id and model_uri")
    if run_id is not None:
        return _run_model(client, client.get_run(run_id))
    match = _REGISTRY_URI_RE.match(model_uri or "")
    if match is None:
        raise PackagingError(f"model URI {model_uri!r} is not of the form models:/NAME/VERSION or models:/NAME@alias")
    name, number, alias = match["name"], match["version"], match["alias"]
    registered = client.get_model_version(name, number) if number else client.get_model_version_by_alias(name, alias)
    if not registered.run_id or not registered.source:
        raise PackagingError(
            f"{model_uri} has no source run or model: the packager needs the training run's parity artifacts"
        )
    logged = _LOGGED_MODEL_URI_RE.match(registered.source)
    return _ModelSource(
        client.get_run(registered.run_id),
        registered.source,
        client.get_model_version_download_uri(name, registered.version),
        logged["model_id"] if logged else None,
        (name, str(registered.version)),
    )


@dataclass(frozen=True)
class _Model:
    """The trained model as loaded from MLflow: the point model and its quantile heads."""

    model: Any
    #: (level, model) per quantile head, levels increasing.
    heads: tuple[tuple[float, Any], ...] = ()

    @property
    def quantiles(self) -> tuple[float, ...]:
        return tuple(level for level, _ in self.heads)

    def convert(self) -> ConvertedModel:
        heads = [head for _, head in self.heads]
        if isinstance(self.model, lgb.Booster):
            return convert_lightgbm(self.model, heads=heads)
        return convert_sklearn(self.model, heads=heads)


def _load_model(source: _ModelSource, tracking_uri: str, folder: Path) -> _Model:
    """The model's files, downloaded into ``folder`` and loaded by flavor (a LightGBM Booster or
    a scikit-learn estimator), with the quantile heads training saved beside it: each a model
    of the same flavor in ``quantiles/<level>``, the levels listed in the MLmodel metadata
    ``pitahaya.quantiles``."""
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=source.artifact_uri, dst_path=str(folder), tracking_uri=tracking_uri
        )
    )
    meta = Model.load(str(local))
    flavors = meta.flavors
    if "lightgbm" in flavors:
        load: Callable[[str], Any] = mlflow.lightgbm.load_model
    elif "sklearn" in flavors:
        load = mlflow.sklearn.load_model
    else:
        raise ConversionError(
            f"{source.model_uri} has flavors {sorted(flavors)}; the packager converts lightgbm and sklearn models"
        )
    try:
        levels = validate_quantiles((meta.metadata or {}).get(QUANTILES_METADATA, []))
    except ValueError as e:
        raise ConversionError(f"{source.model_uri} lists bad quantile levels: {e}") from e

    def booster(path: Path) -> Any:
        try:
            model = load(str(path))
        except lgb.basic.LightGBMError as e:
            raise ConversionError(f"{source.model_uri} does not load as a LightGBM model: {e}") from e
        return getattr(model, "booster_", model)  # an LGBMRegressor logged either way -> its Booster

    heads = tuple((level, booster(local / QUANTILES_DIR / repr(level))) for level in levels)
    return _Model(booster(local), heads)


def _n_features(model: Any) -> int | None:
    """Features the point model takes (each head is checked against it when converted)."""
    if isinstance(model, lgb.Booster):
        return model.num_feature()
    return getattr(model, "n_features_in_", None)


def _check_budget_names(scene: Scene) -> None:
    """Refuse a budget this packager does not know: ignoring it would pass what it meant to stop."""
    unknown = sorted(set(scene.budgets) - BUDGETS)
    if unknown:
        raise PackagingError(
            f"unknown budget {', '.join(unknown)} in the scene's [budgets]: known are {', '.join(sorted(BUDGETS))} "
            "(max_p99_decision_us, a wall-clock figure of the build machine, became max_decision_cost)"
        )


def _check_budgets(scene: Scene, size_bytes: int, report: ParityReport, latency_gate: bool) -> tuple[str, ...]:
    """Refuse a package over a budget; return the warning of an overridden latency gate, if any.

    Raises:
        BudgetError: the archive is larger than ``max_package_bytes``, or (with ``latency_gate``)
            its decision costs more than ``max_decision_cost``.
    """
    max_bytes = scene.budgets.get("max_package_bytes")
    if max_bytes is not None and size_bytes > max_bytes:
        raise BudgetError(f"package is {size_bytes} bytes, over the scene budget of {max_bytes}", report)
    max_cost = scene.budgets.get("max_decision_cost")
    if max_cost is None or report.decision_cost <= max_cost:
        return ()
    verdict = (
        f"a decision costs {report.decision_cost:.1f}x the latency yardstick (median {report.latency_p50_us:.0f} us "
        f"vs {report.reference_p50_us:.1f} us on this machine), over the scene budget of {max_cost}x"
    )
    if latency_gate:
        raise BudgetError(f"{verdict}: make features.py or the model cheaper, or override the latency gate", report)
    warning = f"{verdict}; built anyway: the latency gate is overridden"
    logger.warning(warning)
    return (warning,)


def build_package(
    *,
    run_id: str | None = None,
    model_uri: str | None = None,
    scene: Scene,
    version: str,
    tracking_uri: str,
    out_dir: Path,
    register: bool = True,
    latency_gate: bool = True,
    progress: Progress | None = None,
) -> BuildResult:
    """Package the model of a training run with the scene's feature code, gate it, publish it.

    Args:
        run_id: MLflow run of the training job (give this or ``model_uri``).
        model_uri: A registered model version, ``models:/NAME/VERSION`` or
            ``models:/NAME@alias``; its source run supplies the parity artifacts.
        scene: The scene; its current ``features.py``, policy and budgets are used.
        version: Package version, ``MAJOR.MINOR.PATCH``.
        tracking_uri: MLflow tracking (and registry) URI.
        out_dir: Folder receiving ``<scene>-<version>.tar.xz``.
        register: Also register a model version named after the scene.
        latency_gate: Refuse a package over the scene's ``max_decision_cost``; False builds
            it with a warning (e.g. a model known to be slow, shipped on purpose).
        progress: Called with ``(stage, fraction)`` as the build advances.

    Returns:
        Where the package went, its digest, manifest, parity report and model version.

    Raises:
        ValueError: ``version`` is not ``MAJOR.MINOR.PATCH``, or not exactly one of
            ``run_id`` and ``model_uri`` is given.
        LintError: the scene's feature code uses something feature code may not (checked first).
        ConversionError: the model cannot be loaded or converted, or does not take the
            scene's features.
        ParityError: the package, loaded as a device loads it, disagrees with the run.
        BudgetError: the package is over the scene's size or decision-cost budget.
        PackagingError: MLflow or the run's artifacts failed otherwise.
    """
    check_feature_code(scene.feature_source, str(scene.path / FEATURES_FILE))
    _check_budget_names(scene)
    report_progress: Progress = progress or (lambda stage, fraction: None)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    origin = model_uri or f"run {run_id}"
    try:
        with tempfile.TemporaryDirectory(prefix="pitahaya-package-") as tmp:
            report_progress("download", 0.0)
            source = _resolve_source(client, run_id, model_uri)
            run = source.run
            run_id = run.info.run_id
            parity = _read_parity_set(Path(client.download_artifacts(run_id, PARITY_DIR, tmp)))
            model = _load_model(source, tracking_uri, Path(tmp) / MODEL_ARTIFACT)
            report_progress("download", 1.0)

            manifest, payload = _assemble(scene, version, model, parity.views, run, report_progress)
            archive = build_archive(manifest, payload)
            package = read_package(archive)

            report_progress("parity", 0.0)
            loaded = LoadedPackage.load(package)
            report = check_parity(
                loaded,
                parity.views,
                parity.features,
                parity.predictions,
                progress=lambda f: report_progress("parity", f),
            )
            report_progress("parity", 1.0)
            if not report.passed:
                raise ParityError(report)
            warnings = _check_budgets(scene, package.size_bytes, report, latency_gate)

            report_progress("write", 0.0)
            path = out_dir / Path(target_path(scene.name, version)).name
            write_atomic(path, archive)
            report_path = Path(tmp) / PARITY_REPORT_FILE
            report_path.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
            client.log_artifact(run_id, str(path), PACKAGE_ARTIFACT_DIR)
            client.log_artifact(run_id, str(report_path), PACKAGE_ARTIFACT_DIR)
            report_progress("write", 1.0)

            model_version = None
            if register:
                report_progress("register", 0.0)
                model_version = _register(
                    client,
                    tracking_uri,
                    source,
                    scene.name,
                    _package_tags(version, package.sha256, package.size_bytes, report),
                )
                report_progress("register", 1.0)
    except MlflowException as e:
        raise PackagingError(f"MLflow failed while packaging {origin}: {e}") from e
    except ClientRuntimeError as e:
        raise PackagingError(f"the package fails on the client runtime: {e}") from e
    except OSError as e:
        raise PackagingError(f"cannot read the run's artifacts or write the package: {e}") from e
    return BuildResult(path, package.sha256, package.size_bytes, manifest, report, model_version, warnings)


def _package_tags(version: str, sha256: str, size_bytes: int, report: ParityReport) -> dict[str, str]:
    return {
        "package.version": version,
        "package.sha256": sha256,
        "package.size_bytes": str(size_bytes),
        "parity.max_rel_diff": f"{report.max_rel_diff:.3g}",
        "parity.rows": str(report.n_rows),
        "parity.latency_p99_us": f"{report.latency_p99_us:.0f}",
        "parity.decision_cost": f"{report.decision_cost:.2f}",
    }


def _read_parity_set(folder: Path) -> ParitySet:
    """The run's parity set, downloaded to ``folder``.

    Raises:
        PackagingError: a file of the set is malformed.
    """
    try:
        return ParitySet.read(folder)
    except ValueError as e:
        raise PackagingError(f"the run's parity set is malformed: {e}") from e


def _register(
    client: MlflowClient, tracking_uri: str, source: _ModelSource, scene_name: str, tags: dict[str, str]
) -> str:
    """Tag the scene's model version for this package (registering one when needed); its number.

    A new version records the model's URI as its source and, as ``mlflow.register_model``
    does, is listed on its LoggedModel (tag ``mlflow.modelVersions``).
    """
    if source.registered is not None and source.registered[0] == scene_name:
        name, number = source.registered
        for key, value in tags.items():
            client.set_model_version_tag(name, number, key, value)
        return number
    try:
        client.create_registered_model(scene_name)
    except MlflowException as e:
        if e.error_code not in (ErrorCode.Name(RESOURCE_ALREADY_EXISTS), ErrorCode.Name(ALREADY_EXISTS)):
            raise
    with _registry_store_tracking_uri(tracking_uri):
        version = client.create_model_version(
            scene_name, source.model_uri, run_id=source.run.info.run_id, tags=tags, model_id=source.model_id
        )
    if source.model_id is not None:
        listed = client.get_logged_model(source.model_id).tags.get(MLFLOW_MODEL_VERSIONS)
        versions = [*json.loads(listed or "[]"), {"name": version.name, "version": version.version}]
        client.set_logged_model_tags(source.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(versions)})
    return str(version.version)


@contextlib.contextmanager
def _registry_store_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI at ``uri`` for one registry call, then restore it.

    The one place pitahaya changes it, because MLflow leaves no other way: a SQL or file model
    registry resolves a ``models:/<model_id>`` source by looking the LoggedModel up with a
    default ``MlflowClient()``, which reads the process-wide URI (MLflow 3's
    ``SqlAlchemyStore.create_model_version`` says so in a TODO), whatever client called it. A
    REST registry resolves it on the server. Registering the artifact location instead would
    cut the version's link to its LoggedModel.
    """
    # set_tracking_uri also exports MLFLOW_TRACKING_URI, and a URI may come from that variable
    # alone: restore the variable as it was and re-pin a URI only if one was pinned apart from it.
    env = os.environ.get(_TRACKING_URI_VARIABLE)
    pinned = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(pinned if pinned != env else None)  # type: ignore[arg-type]  # None unsets
        if env is not None:
            os.environ[_TRACKING_URI_VARIABLE] = env


def _assemble(
    scene: Scene,
    version: str,
    model: _Model,
    views: Sequence[View],
    run: Run,
    progress: Progress,
) -> tuple[Manifest, dict[str, bytes]]:
    """Convert the model, cut the self-test, and describe both in a validated manifest.

    Raises:
        ConversionError: the model does not take the scene's features, or the scene's policy
            sizes its plan by a quantile level the model does not output.
    """
    try:
        PolicyKnobs.from_policy(scene.policy, model.quantiles)
    except ValueError as e:
        raise ConversionError(f"scene {scene.name!r} has a [policy] no device takes with this model: {e}") from e
    feature_names = tuple(scene.extractor_class().feature_names)
    n_model = _n_features(model.model)
    if n_model != len(feature_names):
        raise ConversionError(
            f"the model takes {n_model} features but the scene's features.py declares "
            f"{len(feature_names)}: the feature code changed shape since training, retrain"
        )
    progress("convert", 0.0)
    converted = model.convert()
    progress("convert", 1.0)
    progress("selftest", 0.0)
    selftest = build_selftest(views, scene.feature_source, converted.model_bytes)
    progress("selftest", 1.0)
    payload = {
        MODEL_FILE: converted.model_bytes,
        FEATURES_FILE: scene.feature_source.encode(),
        SELFTEST_FILE: selftest,
    }
    manifest = Manifest(
        scene=scene.name,
        version=version,
        feature_names=feature_names,
        input=converted.input,
        output=converted.output,
        files={name: file_entry(data) for name, data in payload.items()},
        policy=dict(scene.policy),
        mlflow={"run_id": run.info.run_id, "experiment_id": run.info.experiment_id},
        metrics={k: float(v) for k, v in sorted(run.data.metrics.items()) if k.startswith(METRIC_PREFIXES)},
        opsets=converted.opsets,
        quantiles=model.quantiles,
    )
    try:
        Manifest.from_dict(manifest.to_dict())
    except ClientRuntimeError as e:
        raise ValueError(f"invalid package manifest: {e}") from e
    return manifest, payload
