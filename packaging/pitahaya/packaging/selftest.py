"""Golden self-test cases shipped in every package as ``selftest.json``.

A device replays these before activating a package (`LoadedPackage.run_selftest`): if its
Python, numpy or ONNX Runtime computes different features or predictions than the packager
did, the package is refused there and then. Cases are cut from the run's parity views, so
they are real user histories: a history prefix (including the empty one, a brand-new user),
the next one to three views as candidates, and ``now`` = the first candidate's start.

Expected features come from the feature code loaded with `load_feature_code`, exactly as a
device loads it; expected predictions from the converted ONNX model on one thread. Case
choice is a pure function of the views, so the same run always yields the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from pitahaya.client_runtime import View, load_feature_code

from pitahaya.packaging._views import streams_by_user
from pitahaya.packaging.convert import inference_session
from pitahaya.packaging.errors import PackagingError

#: History lengths of the cases, one per case; clipped to what each user has.
HISTORY_LENGTHS: tuple[int, ...] = (0, 1, 3, 7, 15, 31, 63, 127)
MAX_CANDIDATES = 3


def _cut_cases(views: Sequence[View]) -> list[tuple[list[View], list[View]]]:
    """(history, candidate views) pairs spread over users and history lengths."""
    streams = [rows for rows in streams_by_user(views).values() if len(rows) >= 2]
    if not streams:
        raise PackagingError("parity views hold no user with two or more views; cannot cut self-test cases")
    cases = []
    for k, length in enumerate(HISTORY_LENGTHS):
        rows = streams[k * len(streams) // len(HISTORY_LENGTHS)]
        cut = min(length, len(rows) - 1)
        n_candidates = 1 + k % MAX_CANDIDATES
        cases.append(([views[i] for i in rows[:cut]], [views[i] for i in rows[cut : cut + n_candidates]]))
    return cases


def build_selftest(views: Sequence[View], feature_source: str, model_bytes: bytes) -> bytes:
    """Canonical ``selftest.json`` bytes for a package.

    Args:
        views: The run's parity views, each user's stream in time order.
        feature_source: The ``features.py`` text going into the package.
        model_bytes: The ONNX model going into the package.

    Returns:
        JSON ``{"cases": [{"history", "now", "candidates", "features", "predictions"}]}``.

    Raises:
        PackagingError: no user has enough views to cut a case.
        FeatureCodeError: the feature code fails to import (from the client runtime).
    """
    extractor_class = load_feature_code(feature_source, name="selftest_features")
    session = inference_session(model_bytes)
    input_name = session.get_inputs()[0].name
    cases: list[dict[str, Any]] = []
    for history, candidate_views in _cut_cases(views):
        extractor = extractor_class()
        for view in history:
            extractor.update(view)
        now = candidate_views[0].start_ts
        candidates = [view.as_candidate() for view in candidate_views]
        features = extractor.features(candidates, now)
        (predictions,) = session.run(None, {input_name: features})
        cases.append(
            {
                "history": [view.to_dict() for view in history],
                "now": now,
                "candidates": [candidate.to_dict() for candidate in candidates],
                "features": features.astype(np.float64).tolist(),
                "predictions": np.asarray(predictions, dtype=np.float64).reshape(-1).tolist(),
            }
        )
    return (json.dumps({"cases": cases}, sort_keys=True, separators=(",", ":")) + "\n").encode()
