"""Factories for real (tiny) packages: a linear ONNX model over the watch_time scene features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from pitahaya.client_runtime import Candidate, Manifest, Scene, TensorSpec, View, build_archive, file_entry
from pitahaya.client_runtime.package import FEATURES_FILE, MODEL_FILE, SELFTEST_FILE

SCENE_DIR = Path(__file__).resolve().parents[2] / "scenes" / "watch_time"
#: Planner knobs naming a quantile level of the model's outputs.
QUANTILE_KNOBS = ("preload_quantile", "buffer_quantile")


def scene_policy(quantiles: tuple[float, ...] = ()) -> dict:
    """The scene's ``[policy]`` for a test model predicting ``quantiles``: without them, the knobs
    naming a level are left out (a device refuses a package whose knobs name a level it lacks)."""
    policy = dict(Scene.load(SCENE_DIR).policy)
    return policy if quantiles else {k: v for k, v in policy.items() if k not in QUANTILE_KNOBS}


def linear_model(n_features: int, *, width: int | None = None, seed: int = 0, outputs: int = 1) -> bytes:
    """A float32 linear model ``features @ w + b`` with output ``watch_s`` of shape [N, outputs]
    (with several outputs the columns have unrelated weights, so "quantiles" cross)."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.0, 0.1, size=(n_features, outputs)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["watch_s"]),
        ],
        "linear",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, width or n_features])],
        [helper.make_tensor_value_info("watch_s", TensorProto.FLOAT, [None, outputs])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.flatten().tolist()),
            helper.make_tensor("b", TensorProto.FLOAT, [1], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pitahaya-tests")
    model.ir_version = 8
    return model.SerializeToString()


def sample_views(user: str = "u1", n: int = 6, start: float = 1_700_000_000.0) -> list[View]:
    views, ts = [], start
    for i in range(n):
        watch = [2.0, 15.0, 1.0, 30.0, 8.0, 4.0][i % 6]
        views.append(View(user, f"v{i}", ts, 20.0 + i, watch, 2_000_000 + 1000 * i))
        ts += watch + 1.0
    return views


def make_archive(
    *,
    version: str = "1.0.0",
    feature_source: str | None = None,
    model: bytes | None = None,
    golden_shift: float = 0.0,
    policy: dict | None = None,
    quantiles: tuple[float, ...] = (),
) -> bytes:
    """Build a valid package (golden vectors computed by running it) unless told to break it.

    ``quantiles``: the model outputs the point, then one column per level (`linear_model`).
    """
    scene = Scene.load(SCENE_DIR)
    source = feature_source if feature_source is not None else scene.feature_source
    extractor_class = scene.extractor_class()
    names = extractor_class.feature_names
    outputs = 1 + len(quantiles)
    model_bytes = model if model is not None else linear_model(len(names), outputs=outputs)
    history = sample_views()
    candidates = [Candidate("c1", 12.0, 1_500_000), Candidate("c2", 60.0, 9_000_000)]
    now = history[-1].end_ts + 1.0
    extractor = extractor_class()
    for view in history:
        extractor.update(view)
    features = extractor.features(candidates, now)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]) if model is None else None
    predictions = (
        session.run(["watch_s"], {"features": features})[0].reshape(-1)
        if session
        else np.zeros(len(candidates) * outputs)
    )
    selftest = {
        "cases": [
            {
                "history": [v.to_dict() for v in history],
                "now": now,
                "candidates": [c.to_dict() for c in candidates],
                "features": features.tolist(),
                "predictions": (predictions + golden_shift).tolist(),
            }
        ]
    }
    payload = {
        MODEL_FILE: model_bytes,
        FEATURES_FILE: source.encode(),
        SELFTEST_FILE: json.dumps(selftest).encode(),
    }
    manifest = Manifest(
        scene="watch_time",
        version=version,
        feature_names=tuple(names),
        input=TensorSpec("features", "float32", (None, len(names))),
        output=TensorSpec("watch_s", "float32", (None, outputs)),
        files={name: file_entry(data) for name, data in payload.items()},
        policy={**scene_policy(quantiles), **(policy or {})},
        quantiles=quantiles,
    )
    return build_archive(manifest, payload)


def failing_on_long_candidates(version: str) -> bytes:
    """A package that passes its self-test but raises on candidates longer than 1000 s."""
    guard = "            if (duration or 0.0) > 1000:\n                raise ValueError('too long')\n"
    line = "            duration, size = cand.duration_s, cand.size_bytes\n"
    source = Scene.load(SCENE_DIR).feature_source
    assert line in source, "the scene's feature code changed: update this patch"
    source = source.replace(line, line + guard)
    return make_archive(version=version, feature_source=source)


def hostile_source(*, at_import: str = "", in_transform: str = "", in_update: str = "") -> str:
    """The scene's real feature code with ``at_import`` run at import and the other snippets run
    in `transform` / `update` *after* the self-test (which makes one transform call and one
    update per golden history view), so a package carrying them passes its self-test."""
    source = Scene.load(SCENE_DIR).feature_source
    golden_updates = len(sample_views())
    prelude = f"_calls = {{'transform': 0, 'update': 0}}\n{at_import}\n"
    source = source.replace("\nclass Extractor(", f"\n{prelude}\n\nclass Extractor(", 1)

    def inject(signature: str, counter: str, after: int, snippet: str) -> None:
        nonlocal source
        if not snippet:
            return
        body = "".join(f"            {line}\n" for line in snippet.splitlines())
        guard = f"        _calls['{counter}'] += 1\n        if _calls['{counter}'] > {after}:\n{body}"
        assert signature in source
        source = source.replace(signature, signature + guard, 1)

    inject("    def transform(self, candidates, now, out):\n", "transform", 1, in_transform)
    inject("    def update(self, view):\n", "update", golden_updates, in_update)
    return source
