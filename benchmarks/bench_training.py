"""Benchmark the training job's featurization (streaming vs batch) and LightGBM training time.

For each size, a log of generated views is featurized by:

- the *streaming* path (`build_matrix`: the scene's ``features.py``, one Python call per
  view, what devices run) — the baseline the ratio is taken to; on a prefix of at most
  ``--stream-views`` views when the log is larger (the streaming cost is linear in views),
- the *batch* path (`build_matrix_batch`: the scene's ``batch_features.py``, NumPy over whole
  columns) on the full log,

the batch path timed twice (the faster of the two counts; both are printed), once more
on the same log shuffled (generated logs come in (user, time) order, which lets the batch path
skip its sort; a shuffled log pays for it), and once untimed under ``tracemalloc`` for the peak
memory it allocates (NumPy reports its buffers there: the float32 matrix, the dataset's
columns, temporaries). The batch matrix is checked bit-identical to the streamed one on the
shared prefix. Then LightGBM is fitted as `train` fits it (scene parameters, early stopping on
the time-ordered valid rows, 2 threads) unless ``--no-train``. Times are wall-clock on this
machine.

Run: ``.venv/bin/python benchmarks/bench_training.py --views 1000000 10000000 [--json]``
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

import numpy as np
from pitahaya.client_runtime import Scene
from pitahaya.training import (
    GeneratorConfig,
    TrainConfig,
    build_matrix,
    build_matrix_batch,
    generate_table,
    split_by_time,
)
from pitahaya.training.fitting import fit_model

SCENE = Path(__file__).resolve().parents[1] / "scenes" / "watch_time"


def _timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _timed_on_shuffled(table, scene) -> float:
    """Seconds of the batch path on ``table``'s rows in a random order."""
    shuffled = table.take(np.random.default_rng(2).permutation(len(table)))
    return _timed(lambda: build_matrix_batch(shuffled, scene))[1]


def _peak_allocated(fn) -> int:
    """Peak bytes allocated (Python objects and NumPy buffers) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench(n_views: int, stream_views: int, do_train: bool) -> dict[str, float]:
    scene = Scene.load(SCENE)
    extractor = scene.extractor_class()
    users = max(1_000, n_views // 1_000)
    table, gen_s = _timed(lambda: generate_table(GeneratorConfig(n_views=n_views, n_users=users, seed=1)))
    prefix = table.take(np.arange(min(stream_views, n_views)))  # generated logs are in (user, time) order
    streamed, stream_s = _timed(lambda: build_matrix(prefix, extractor))
    batch, cold_s = _timed(lambda: build_matrix_batch(table, scene))
    warm_s = _timed(lambda: build_matrix_batch(table, scene))[1]
    shuffled_s = _timed_on_shuffled(table, scene)
    batch_peak_bytes = _peak_allocated(lambda: build_matrix_batch(table, scene))
    batch_prefix = build_matrix_batch(prefix, scene)
    assert np.array_equal(batch_prefix.X, streamed.X), "batch path differs from streaming"
    figures = {
        "views": float(n_views),
        "generate_s": gen_s,
        "stream_views": float(len(prefix)),
        "stream_views_per_s": len(prefix) / stream_s,
        "batch_views_per_s": n_views / min(cold_s, warm_s),
        "batch_cold_s": cold_s,
        "batch_warm_s": warm_s,
        "batch_shuffled_views_per_s": n_views / shuffled_s,
        "batch_peak_mb": batch_peak_bytes / 2**20,
    }
    figures["batch_over_stream"] = figures["batch_views_per_s"] / figures["stream_views_per_s"]
    if do_train:
        split = split_by_time(batch)
        # The trainer's own fit (its defaults: seed 0, 2 threads, patience 20); nothing is logged.
        config = TrainConfig(scene=SCENE, tracking_uri="unused")
        fitted, train_s = _timed(lambda: fit_model(config, scene, batch, split, None, None, progress=lambda f: None))
        figures.update(train_s=train_s, best_iteration=float(fitted.best_iteration))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--stream-views", type=int, default=1_000_000, help="cap of the streaming baseline")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [bench(n, args.stream_views, not args.no_train) for n in args.views]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{int(r['views']):>11,} views: stream {r['stream_views_per_s']:>11,.0f} views/s "
            f"(on {int(r['stream_views']):,}), batch {r['batch_views_per_s']:>11,.0f} views/s "
            f"(best of {r['batch_cold_s']:.2f} s cold, {r['batch_warm_s']:.2f} s warm; peak {r['batch_peak_mb']:,.0f} MB; "
            f"shuffled log {r['batch_shuffled_views_per_s']:,.0f} views/s), ratio {r['batch_over_stream']:.1f}x"
            + (f", LightGBM fit {r['train_s']:.1f} s ({int(r['best_iteration'])} rounds)" if "train_s" in r else "")
        )


if __name__ == "__main__":
    main()
