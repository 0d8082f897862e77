"""Benchmark `Runtime.predict`, the hot path of a device, against LightGBM and ONNX Runtime alone.

A 200-tree, 63-leaf LightGBM model is trained on generated views run through the real
watch_time feature code, converted to ONNX by the packager, archived and loaded exactly as a
device does. All timings are on one thread, in the same process and run:

- ``Runtime.predict`` for 1 and 8 candidates (features + inference + planning + hooks), and
  for 1 candidate with the built-in `TelemetryReporter` as its hooks,
- ``LoadedPackage.infer`` (the runtime's inference step alone),
- ONNX Runtime ``session.run`` alone on a preallocated input, and through the runtime's
  preallocated IOBinding (`BoundInference.run`, the floor of the hot path),
- LightGBM's own single-row ``Booster.predict`` (the baseline the ratio is taken to).

The RSS figure comes from a fresh child process that imports only the client runtime and
loads the package, as a device would (the parent holds LightGBM and training data).

Run: ``.venv/bin/python benchmarks/bench_predict.py [--calls 20000] [--json]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pitahaya.client_runtime import (
    Candidate,
    LoadedPackage,
    Manifest,
    PackageUpdater,
    Release,
    Runtime,
    Scene,
    TelemetryReporter,
    UpdateCheck,
    build_archive,
    file_entry,
    read_package,
)
from pitahaya.client_runtime.package import FEATURES_FILE, MODEL_FILE, SELFTEST_FILE

# LightGBM, the packager and the generator are imported inside the functions that use them,
# so that the RSS child process (which imports `ArchiveUpdater` from here) stays device-sized.

ROOT = Path(__file__).resolve().parents[1]
SCENE_DIR = ROOT / "scenes" / "watch_time"


class ArchiveUpdater(PackageUpdater):
    """Serves one archive from memory as if TUF had verified it (the benchmark measures predict, not HTTP)."""

    def __init__(self, cache_dir: Path, archive: bytes, version: str) -> None:
        super().__init__("http://unused", "watch_time", "bench-device", cache_dir)
        self.archive, self.version = archive, version

    def check(self) -> UpdateCheck:
        sha = hashlib.sha256(self.archive).hexdigest()
        path = self.cached_archive(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.archive)
        return UpdateCheck(Release("watch_time", "stable", 1, self.version), self.version, path, sha)


def build_package(n_views: int, seed: int) -> tuple[bytes, Any, np.ndarray, list]:
    """Train the benchmark model and package it; returns archive, booster, matrix and views."""
    import onnxruntime as ort
    from bench_package import train  # the same benchmark booster as the package benchmark

    from pitahaya.packaging import convert_lightgbm

    scene = Scene.load(SCENE_DIR)
    extractor_class = scene.extractor_class()
    booster, X, views = train(n_views, seed)
    converted = convert_lightgbm(booster)
    # One golden case from the first user's stream, computed with the packaged model itself.
    history = [v for v in views if v.user_id == views[0].user_id][:20]
    candidates = [v.as_candidate() for v in history[-3:]]
    extractor = extractor_class()
    for view in history[:-3]:
        extractor.update(view)
    now = history[-3].start_ts
    features = extractor.features(candidates, now)
    predictions = ort.InferenceSession(converted.model_bytes).run(None, {converted.input.name: features})[0]
    selftest = {
        "cases": [
            {
                "history": [v.to_dict() for v in history[:-3]],
                "now": now,
                "candidates": [c.to_dict() for c in candidates],
                "features": features.astype(np.float64).tolist(),
                "predictions": np.asarray(predictions, dtype=np.float64).reshape(-1).tolist(),
            }
        ]
    }
    payload = {
        MODEL_FILE: converted.model_bytes,
        FEATURES_FILE: scene.feature_source.encode(),
        SELFTEST_FILE: json.dumps(selftest).encode(),
    }
    manifest = Manifest(
        scene="watch_time",
        version="1.0.0",
        feature_names=tuple(extractor_class.feature_names),
        input=converted.input,
        output=converted.output,
        files={name: file_entry(blob) for name, blob in payload.items()},
        policy=dict(scene.policy),
        opsets=converted.opsets,
    )
    return build_archive(manifest, payload), booster, X, views


def percentiles(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """p50 and p99 of ``fn()`` in microseconds over ``calls`` calls (after a warm-up)."""
    for _ in range(min(calls // 10, 2000)):
        fn()
    samples = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        started = clock()
        fn()
        samples[i] = clock() - started
    p50, p99 = np.percentile(samples, [50, 99]) / 1000.0
    return float(p50), float(p99)


RSS_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pitahaya.client_runtime import Candidate, Runtime
    sys.path.insert(0, {bench_dir!r})
    from bench_predict import ArchiveUpdater

    def rss_kb(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])

    before = rss_kb("VmRSS:")
    archive = Path({archive!r}).read_bytes()
    updater = ArchiveUpdater(Path({cache!r}), archive, "1.0.0")
    rt = Runtime("http://unused", "watch_time", "bench-device", cache_dir={cache!r}, updater=updater)
    assert rt.refresh().outcome == "installed"
    cands = [Candidate(f"v{{i}}", 20.0 + i, 2_000_000) for i in range(8)]
    for _ in range(2000):
        rt.predict(cands[:1])
    print(before, rss_kb("VmRSS:"), rss_kb("VmHWM:"))
    """
)


def measure_rss(archive: bytes) -> tuple[float, float, float]:
    """(RSS after imports, RSS with the package loaded, peak RSS) in MiB, from a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        archive_path = Path(tmp) / "package.tar.xz"
        archive_path.write_bytes(archive)
        script = RSS_CHILD.format(
            bench_dir=str(Path(__file__).resolve().parent), archive=str(archive_path), cache=str(Path(tmp) / "cache")
        )
        out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    before, after, peak = (int(x) / 1024 for x in out.split())
    return before, after, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=40_000, help="generated views to train on")
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per figure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    archive, booster, X, views = build_package(args.views, args.seed)
    assert booster.num_trees() == 200 and booster.dump_model()["tree_info"][0]["num_leaves"] <= 63

    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(
            "http://unused",
            "watch_time",
            "bench-device",
            cache_dir=tmp,
            updater=ArchiveUpdater(Path(tmp), archive, "1.0.0"),
        )
        assert rt.refresh().outcome == "installed"
        user = views[0].user_id
        for view in [v for v in views if v.user_id == user][:50]:
            rt.record(view)
        now = views[0].start_ts + 86_400.0
        cands = [Candidate(f"v{i}", 15.0 + 7 * i, 1_500_000 + 400_000 * i) for i in range(8)]
        one, eight = cands[:1], cands
        assert rt.predict(one, now).reason == "ok"
        figures: dict[str, object] = {}
        figures["predict_1"] = percentiles(lambda: rt.predict(one, now), args.calls)
        figures["predict_8"] = percentiles(lambda: rt.predict(eight, now), args.calls)
        # The same with the built-in telemetry reporter as hooks (queue only; nothing is sent).
        reporter = TelemetryReporter("http://unused", "t", scene="watch_time", device_id="bench", max_queue=10**6)
        rt_reported = Runtime(
            "http://unused",
            "watch_time",
            "bench-device",
            cache_dir=Path(tmp) / "reported",
            updater=ArchiveUpdater(Path(tmp) / "reported", archive, "1.0.0"),
            hooks=reporter,
        )
        assert rt_reported.refresh().outcome == "installed"
        figures["predict_1_with_reporter"] = percentiles(lambda: rt_reported.predict(one, now), args.calls)

    loaded = LoadedPackage.load(read_package(archive))
    x1 = np.ascontiguousarray(X[:1])
    x8 = np.ascontiguousarray(X[:8])
    figures["infer_1"] = percentiles(lambda: loaded.infer(x1), args.calls)
    session, inp, out = loaded.session, loaded.input_name, [loaded.output_name]
    feed1, feed8 = {inp: x1}, {inp: x8}
    figures["onnxruntime_1"] = percentiles(lambda: session.run(out, feed1), args.calls)
    figures["onnxruntime_8"] = percentiles(lambda: session.run(out, feed8), args.calls)
    bound = loaded.bind(1)
    bound.features[:] = x1
    figures["onnxruntime_1_iobinding"] = percentiles(bound.run, args.calls)
    figures["lightgbm_1"] = percentiles(lambda: booster.predict(x1, num_threads=1), args.calls // 4)
    figures["lightgbm_8"] = percentiles(lambda: booster.predict(x8, num_threads=1), args.calls // 4)
    rss_before, rss_loaded, rss_peak = measure_rss(archive)

    lgb1 = figures["lightgbm_1"][0]  # type: ignore[index]
    result = {
        "model": {"trees": booster.num_trees(), "max_leaves": 63, "package_bytes": len(archive)},
        "us": {k: {"p50": round(v[0], 1), "p99": round(v[1], 1)} for k, v in figures.items()},  # type: ignore[index]
        "ratio_predict_1_to_lightgbm_1_p50": round(figures["predict_1"][0] / lgb1, 3),  # type: ignore[index]
        "ratio_predict_1_to_onnxruntime_1_p50": round(
            figures["predict_1"][0] / figures["onnxruntime_1"][0],  # type: ignore[index]
            3,
        ),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "rss_mib": {
            "imports": round(rss_before, 1),
            "package_loaded": round(rss_loaded, 1),
            "peak": round(rss_peak, 1),
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"model: {booster.num_trees()} trees, <=63 leaves, package {len(archive) / 1024:.1f} KiB")
    print(f"{'figure':<24}{'p50 us':>10}{'p99 us':>10}")
    for name, (p50, p99) in figures.items():  # type: ignore[misc]
        print(f"{name:<24}{p50:>10.1f}{p99:>10.1f}")
    print(f"predict(1) / LightGBM Booster.predict(1 row), p50: {result['ratio_predict_1_to_lightgbm_1_p50']}")
    print(f"predict(1) / onnxruntime alone (1 row), p50:        {result['ratio_predict_1_to_onnxruntime_1_p50']}")
    print(f"1-minute load average during the run: {result['load_average_1m']} (2 cores; p99 suffers above ~2)")
    print(f"RSS: {rss_before:.1f} MiB after imports, {rss_loaded:.1f} MiB with the package loaded, peak {rss_peak:.1f}")


if __name__ == "__main__":
    main()
