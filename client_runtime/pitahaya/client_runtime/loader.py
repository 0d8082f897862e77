"""Turn a verified `Package` into something that can answer: feature code + ONNX session.

`LoadedPackage.load` runs every check a package must pass before it can answer: the feature
code imports in its own module and declares the manifest's feature names, and the ONNX model
loads with the manifest's input/output spec on one intra-op thread. Any failure raises a
`PackageError` subclass and the package is never used. ``load(package)`` also runs the golden
self-test in this interpreter, which suits trusted callers (the packager); a device runs the
package inside a sandbox and judges the self-test outside it
(`pitahaya.client_runtime.containment`), so this module is what a sandbox executes.

The hot path does not go through `LoadedPackage.infer` (which allocates its input and output
per call) but through `BoundInference`: per batch size, an input matrix the feature code writes
into and an output vector ONNX Runtime writes into, bound once with an IOBinding. A call then
allocates nothing, and creating a binding runs one warm-up inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from pitahaya.client_runtime.errors import FeatureCodeError, ModelLoadError, PackageError, ResourceLimitError
from pitahaya.client_runtime.events import Candidate, View
from pitahaya.client_runtime.extractor import FeatureExtractor, load_feature_code
from pitahaya.client_runtime.package import Manifest, Package
from pitahaya.client_runtime.selftest import SelftestCase, check_answers, parse_cases

#: Batch sizes bound (and warmed up) when a package is loaded; larger ones are bound on first use.
WARM_BATCHES = (1, 2, 3, 4, 8)
#: Largest batch that gets its own preallocated binding; beyond it `LoadedPackage.infer` allocates.
MAX_BOUND_BATCH = 64


def session_options() -> ort.SessionOptions:
    """ONNX Runtime settings of every session a device opens (the packager times its yardstick with them too)."""
    options = ort.SessionOptions()
    # A device runs inside someone else's app: one thread, no spinning, no surprises.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class BoundInference:
    """Preallocated model input and output for one batch size, bound to the session once.

    Not thread-safe: one caller at a time (the runtime holds its lock). Write features into
    `features`, call `run`, read the predictions from the returned vector (valid until the
    next `run`): ``outputs`` values per row, row after row (the point, then its quantiles).

    Raises:
        ModelLoadError: the model's output for ``n`` rows is not ``n`` x ``outputs`` float32 values.
    """

    __slots__ = ("_binding", "_session", "features", "predictions")

    def __init__(
        self, session: ort.InferenceSession, input_name: str, output_name: str, n: int, width: int, outputs: int = 1
    ) -> None:
        self.features = np.zeros((n, width), dtype=np.float32)
        try:  # the warm-up inference, which also tells the output shape for n rows
            (probe,) = session.run([output_name], {input_name: self.features})
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"model.onnx failed on {n} rows: {e}") from e
        if probe.dtype != np.float32 or probe.size != n * outputs or (probe.ndim == 2 and probe.shape[1] != outputs):
            raise ModelLoadError(f"model output for {n} rows has shape {probe.shape} and dtype {probe.dtype}")
        output = np.zeros(probe.shape, dtype=np.float32)
        binding = session.io_binding()
        binding.bind_cpu_input(input_name, self.features)
        binding.bind_output(output_name, "cpu", 0, np.float32, list(output.shape), output.ctypes.data)
        self._session, self._binding = session, binding
        #: Flat view of the bound output buffer: ``outputs`` values per row.
        self.predictions = output.reshape(-1)
        self.run()

    def run(self) -> np.ndarray:
        """Run the model on `features` in place; returns `predictions` (the same buffer each call)."""
        # run_options stays None: with a RunOptions object this onnxruntime version probes a
        # config key by raising and catching an exception, which costs more than the inference.
        self._session.run_with_iobinding(self._binding)
        return self.predictions


@dataclass(frozen=True)
class LoadedPackage:
    """A package whose feature code and model passed every load-time check."""

    package: Package
    extractor_class: type[FeatureExtractor]
    session: ort.InferenceSession
    input_name: str
    output_name: str

    @property
    def manifest(self) -> Manifest:
        return self.package.manifest

    @property
    def version(self) -> str:
        return self.package.manifest.version

    @classmethod
    def load(cls, package: Package, *, selftest: bool = True) -> LoadedPackage:
        """Import the feature code, load the model and, unless ``selftest`` is False, run the self-test here.

        Raises:
            FeatureCodeError: feature code does not import or its names differ from the manifest.
            ModelLoadError: the model does not load or its signature differs from the manifest.
            SelfTestError: the golden self-test vectors are not reproduced.
        """
        manifest = package.manifest
        extractor_class = load_feature_code(
            package.feature_source, name=f"{manifest.scene}_{manifest.version}_features"
        )
        if tuple(extractor_class.feature_names) != manifest.feature_names:
            raise FeatureCodeError("features.py feature_names differ from manifest.json feature_names")
        try:
            session = ort.InferenceSession(
                package.model_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"model.onnx failed to load: {e}") from e
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            raise ModelLoadError(f"model must take one float32 tensor, takes {[(i.name, i.type) for i in inputs]}")
        width = inputs[0].shape[-1] if inputs[0].shape else None
        if len(inputs[0].shape) != 2 or width != len(manifest.feature_names):
            raise ModelLoadError(
                f"model input shape {inputs[0].shape} does not take {len(manifest.feature_names)} features"
            )
        if inputs[0].name != manifest.input.name or manifest.output.name not in [o.name for o in outputs]:
            raise ModelLoadError("model input/output names differ from manifest.json")
        loaded = cls(package, extractor_class, session, inputs[0].name, manifest.output.name)
        if selftest:
            loaded.run_selftest()
        return loaded

    def bind(self, n: int) -> BoundInference:
        """Preallocated, bound input/output for batches of ``n`` rows (runs one warm-up inference).

        Raises:
            ModelLoadError: the model fails on ``n`` rows or returns the wrong number of values.
        """
        manifest = self.manifest
        return BoundInference(
            self.session, self.input_name, self.output_name, n, len(manifest.feature_names), manifest.outputs
        )

    def new_extractor(self) -> FeatureExtractor:
        """A fresh per-user feature state."""
        try:
            return self.extractor_class()
        except Exception as e:
            raise FeatureCodeError(f"Extractor() raised: {type(e).__name__}: {e}") from e

    def infer(self, features: np.ndarray) -> np.ndarray:
        """Run the model on a float32 feature matrix; returns its outputs row after row (`Manifest.outputs` per row)."""
        (out,) = self.session.run([self.output_name], {self.input_name: features})
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def run_selftest(self) -> None:
        """Replay the package's golden cases through its own feature code and model, in this interpreter.

        Only for trusted code: the package's code runs here and could rebind this check. A
        device uses `pitahaya.client_runtime.containment`, which judges outside the sandbox.

        Raises:
            SelfTestError: a feature or prediction differs from the shipped expectation.
            FeatureCodeError: the feature code raised.
        """
        check_answers(parse_cases(self.package.selftest), self.answer)

    def answer(self, case: SelftestCase) -> tuple[np.ndarray, np.ndarray]:
        """The features and predictions this package computes for a self-test case."""
        features = self.features_for(case.history, case.candidates, case.now)
        return features, self.infer(features)

    def features_for(self, history: Sequence[View], candidates: Sequence[Candidate], now: float) -> np.ndarray:
        """Features of ``candidates`` for a user with ``history`` (a fresh extractor; not the hot path)."""
        extractor = self.new_extractor()
        try:
            for view in history:
                extractor.update(view)
            return extractor.features(candidates, now)
        except Exception as e:
            raise FeatureCodeError(f"features.py raised: {type(e).__name__}: {e}") from e


def load_failure(error: BaseException) -> PackageError:
    """What an exception escaping the load of a package (its import, model, warm-up) means.

    Memory exhaustion is told apart even when the feature-code loader wrapped it, since it is
    the sandbox's limit speaking, not a bug in the code; anything else not already a
    `PackageError` (``SystemExit`` included) is the feature code's fault.
    """
    if isinstance(error, MemoryError) or isinstance(error.__cause__, MemoryError):
        return ResourceLimitError(f"the package ran out of memory while loading: {error}"[:1000])
    if isinstance(error, PackageError):
        return error
    return FeatureCodeError(f"{type(error).__name__}: {error}"[:1000])


class Engine:
    """A loaded package with one user's feature state: what a sandbox executes for every call.

    Every call is one `step`: optionally start from a fresh feature state, fold in the views
    recorded since the previous step, then compute features and run the model for the
    candidates. Serving, the history replay after a swap and the self-test all go through it,
    so the self-test exercises the very path that serves. Exceptions from the package's code
    propagate unchanged; the caller (a worker process, a worker thread, or the runtime itself)
    decides what they mean. Not thread-safe.
    """

    __slots__ = ("_bindings", "_extractor", "loaded")

    def __init__(self, loaded: LoadedPackage) -> None:
        self.loaded = loaded
        # Warm-up: binding runs one inference per batch size, before the package answers.
        self._bindings: dict[int, BoundInference] = {n: loaded.bind(n) for n in WARM_BATCHES}
        self._extractor = loaded.new_extractor()

    @property
    def width(self) -> int:
        return len(self.loaded.manifest.feature_names)

    def step(
        self, reset: bool, views: Sequence[View], candidates: Sequence[Candidate], now: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fold ``views`` into the state (a fresh one if ``reset``), then predict ``candidates``.

        Returns:
            The feature matrix and the model's outputs, `Manifest.outputs` per candidate, row
            after row: views into preallocated buffers, valid until the next step (copy them to
            keep them).
        """
        if reset:
            self._extractor = self.loaded.new_extractor()
        extractor = self._extractor
        for view in views:
            extractor.update(view)
        n = len(candidates)
        if n == 0:
            return _NO_FEATURES, _NO_PREDICTIONS
        binding = self._bindings.get(n)
        if binding is None and n <= MAX_BOUND_BATCH:
            binding = self._bindings[n] = self.loaded.bind(n)
        if binding is None:
            features = extractor.features(candidates, now)
            return features, self.loaded.infer(features)
        extractor.transform(candidates, now, binding.features)
        return binding.features, binding.run()


_NO_FEATURES = np.zeros((0, 0), dtype=np.float32)
_NO_PREDICTIONS = np.zeros(0, dtype=np.float32)
