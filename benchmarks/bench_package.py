"""Benchmark the packager's output: size against the LightGBM text model, and session creation time.

A 200-tree, 63-leaf LightGBM model (the scene's ``[training]`` shape) is trained on generated
views run through the real watch_time feature code, then packaged the way `build_package`
does (float32-snapped thresholds, deterministic ONNX, 8 golden self-test cases, the
reproducible ``.tar.xz``). In the same run it measures:

- sizes: the LightGBM text model (the baseline of every ratio), the ONNX model as onnxmltools
  writes it (``TreeEnsembleRegressor``) and as the packager ships it (opset-5
  ``TreeEnsemble``), and the package archive, raw tar and compressed with xz (the format) and,
  for comparison only, gzip and zstd (the ``zstd`` CLI, when installed: devices cannot read
  zstd packages today);
- ONNX Runtime session creation (one thread, as on a device) for both ONNX forms, median of
  ``--sessions`` creations, and the largest prediction difference between the two forms.

The goal (issue 4): compressed package <= 15% of the LightGBM text model.

Run: ``.venv/bin/python benchmarks/bench_package.py [--views 60000] [--sessions 15] [--json]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pitahaya.client_runtime import FEATURES_FILE, MODEL_FILE, SELFTEST_FILE, Manifest, Scene, build_archive, file_entry

ROOT = Path(__file__).resolve().parents[1]
SCENE_DIR = ROOT / "scenes" / "watch_time"
GOAL_RATIO = 0.15


def train(n_views: int, seed: int, quantiles: Sequence[float] = ()) -> tuple[Any, np.ndarray, list, list]:
    """The benchmark booster (200 trees, 63 leaves), its feature matrix, the views, and one
    booster of the same size per quantile level (the quantile loss at that level)."""
    import lightgbm as lgb

    from pitahaya.client_runtime import with_item_stats
    from pitahaya.training import GeneratorConfig, build_matrix, generate_views

    scene = Scene.load(SCENE_DIR)
    generated = generate_views(GeneratorConfig(n_views=n_views, n_users=max(n_views // 200, 10), seed=seed))
    views = with_item_stats(generated)  # each candidate with the feed's figures, as the scene trains
    data = build_matrix(views, scene.extractor_class())
    params = {
        "objective": "regression_l1",
        "num_leaves": 63,
        "min_child_samples": 20,
        "learning_rate": 0.05,
        "num_threads": 1,
        "verbose": -1,
        "seed": seed,
    }
    dataset = lgb.Dataset(data.X, data.y, free_raw_data=False)
    heads = [
        lgb.train({**params, "objective": "quantile", "alpha": level}, dataset, num_boost_round=200)
        for level in quantiles
    ]
    return lgb.train(params, dataset, num_boost_round=200), data.X, views, heads


def archive_for(model_bytes: bytes, converted: Any, views: list) -> bytes:
    """The package archive `build_package` would write for this model (same parts, same format)."""
    from pitahaya.packaging.selftest import build_selftest

    scene = Scene.load(SCENE_DIR)
    payload = {
        MODEL_FILE: model_bytes,
        FEATURES_FILE: scene.feature_source.encode(),
        SELFTEST_FILE: build_selftest(views[:5000], scene.feature_source, model_bytes),
    }
    manifest = Manifest(
        scene=scene.name,
        version="1.0.0",
        feature_names=tuple(scene.extractor_class().feature_names),
        input=converted.input,
        output=converted.output,
        files={name: file_entry(blob) for name, blob in payload.items()},
        policy=dict(scene.policy),
        opsets=converted.opsets,
    )
    return build_archive(manifest, payload)


def zstd_size(data: bytes) -> int | None:
    """Size with ``zstd --ultra -22`` (the strongest level), or None without the CLI."""
    if shutil.which("zstd") is None:
        return None
    out = subprocess.run(["zstd", "--ultra", "-22", "-c", "-q"], input=data, capture_output=True, check=True).stdout
    return len(out)


def session_ms(model_bytes: bytes, repeats: int) -> float:
    from pitahaya.packaging.convert import inference_session

    inference_session(model_bytes)  # warm-up: ONNX Runtime's one-time initialisation
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        inference_session(model_bytes)
        samples.append((time.perf_counter() - started) * 1000)
    return float(np.median(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=60_000)
    parser.add_argument("--sessions", type=int, default=15)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from pitahaya.packaging import convert_lightgbm
    from pitahaya.packaging.convert import INPUT_NAME, inference_session

    booster, X, views, _ = train(args.views, args.seed)
    lightgbm_text = len(booster.model_to_string().encode())
    regressor = convert_lightgbm(booster, compact=False)
    compact = convert_lightgbm(booster)
    archive = archive_for(compact.model_bytes, compact, views)
    archive_regressor = archive_for(regressor.model_bytes, regressor, views)
    tar = lzma.decompress(archive)  # the package's tar, as a device unpacks it
    rows = X[:20_000].astype(np.float32)
    predictions = [inference_session(m.model_bytes).run(None, {INPUT_NAME: rows})[0] for m in (regressor, compact)]
    figures = {
        "trees": booster.num_trees(),
        "leaves_max": int(max(t["num_leaves"] for t in booster.dump_model()["tree_info"])),
        "lightgbm_text_bytes": lightgbm_text,
        "lightgbm_text_xz_bytes": len(
            lzma.compress(booster.model_to_string().encode(), preset=9 | lzma.PRESET_EXTREME)
        ),
        "onnx_regressor_bytes": len(regressor.model_bytes),
        "onnx_tree_ensemble_bytes": len(compact.model_bytes),
        "package_tar_bytes": len(tar),
        "package_xz_bytes": len(archive),
        "package_xz_regressor_bytes": len(archive_regressor),
        "package_gzip9_bytes": len(gzip.compress(tar, compresslevel=9, mtime=0)),
        "package_zstd22_bytes": zstd_size(tar),
        "session_regressor_ms": session_ms(regressor.model_bytes, args.sessions),
        "session_tree_ensemble_ms": session_ms(compact.model_bytes, args.sessions),
        "max_abs_diff_tree_ensemble_vs_regressor": float(np.abs(predictions[0] - predictions[1]).max()),
        "opsets": compact.opsets,
    }
    figures["ratio_package_xz_to_lightgbm_text"] = figures["package_xz_bytes"] / lightgbm_text
    figures["ratio_onnx_tree_ensemble_to_regressor"] = (
        figures["onnx_tree_ensemble_bytes"] / figures["onnx_regressor_bytes"]
    )
    figures["ratio_session_tree_ensemble_to_regressor"] = (
        figures["session_tree_ensemble_ms"] / figures["session_regressor_ms"]
    )
    figures["goal_met"] = figures["ratio_package_xz_to_lightgbm_text"] <= GOAL_RATIO
    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
        return
    kib = 1024
    print(f"model: {figures['trees']} trees, up to {figures['leaves_max']} leaves; opsets {figures['opsets']}")
    print(f"LightGBM text model         {lightgbm_text / kib:9.1f} KiB (baseline)")
    print(f"  ... xz -9e                {figures['lightgbm_text_xz_bytes'] / kib:9.1f} KiB")
    print(f"ONNX TreeEnsembleRegressor  {figures['onnx_regressor_bytes'] / kib:9.1f} KiB")
    print(f"ONNX TreeEnsemble (shipped) {figures['onnx_tree_ensemble_bytes'] / kib:9.1f} KiB")
    print(f"package tar (raw)           {len(tar) / kib:9.1f} KiB")
    print(f"package .tar.xz (shipped)   {len(archive) / kib:9.1f} KiB")
    print(f"  ... with the regressor    {len(archive_regressor) / kib:9.1f} KiB")
    print(f"  ... gzip -9 instead       {figures['package_gzip9_bytes'] / kib:9.1f} KiB")
    if figures["package_zstd22_bytes"] is not None:
        print(f"  ... zstd --ultra -22      {figures['package_zstd22_bytes'] / kib:9.1f} KiB")
    print(
        f"session creation: regressor {figures['session_regressor_ms']:.1f} ms, "
        f"TreeEnsemble {figures['session_tree_ensemble_ms']:.1f} ms "
        f"(ratio {figures['ratio_session_tree_ensemble_to_regressor']:.2f})"
    )
    print(f"max |TreeEnsemble - regressor| on 20k rows: {figures['max_abs_diff_tree_ensemble_vs_regressor']:.3g}")
    verdict = "meets" if figures["goal_met"] else "MISSES"
    print(
        f"ratio compressed package / LightGBM text: {figures['ratio_package_xz_to_lightgbm_text']:.3f} "
        f"({verdict} the <= {GOAL_RATIO:.2f} goal)"
    )


if __name__ == "__main__":
    main()
