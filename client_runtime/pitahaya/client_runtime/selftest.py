"""The self-test, judged by code the package cannot reach.

A package ships golden cases (``selftest.json``): a user history, candidates, a decision time,
and the features and predictions the training side computed for them. The device asks the
package to compute each case through the path that serves (a fresh feature state fed the
history, then features and the model), and compares the answers *here*, in the host's
interpreter, against the cases it parsed itself from the verified archive. Under the
``process`` isolation the package's code never runs in this interpreter, so it cannot rebind
the check that judges it; it only ever returns numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pitahaya.client_runtime.errors import SelfTestError
from pitahaya.client_runtime.events import Candidate, View

#: Tolerances: features must match to float32 rounding, predictions closely.
FEATURE_RTOL = 1e-6
PREDICTION_RTOL = 1e-4
PREDICTION_ATOL = 1e-3
#: More cases than this is not a self-test but a way to stall loading.
MAX_CASES = 256


@dataclass(frozen=True)
class SelftestCase:
    """One golden case: what to feed the package and what it must answer."""

    history: tuple[View, ...]
    candidates: tuple[Candidate, ...]
    now: float
    features: np.ndarray
    predictions: np.ndarray


def parse_cases(selftest: Any) -> list[SelftestCase]:
    """The cases of a parsed ``selftest.json``.

    Raises:
        SelfTestError: the document is malformed, empty or has too many cases.
    """
    try:
        raw = selftest["cases"]
        if not isinstance(raw, list):
            raise TypeError("cases must be a list")
    except (KeyError, TypeError) as e:
        raise SelfTestError(f"selftest.json is malformed: {e}") from e
    if not raw:
        raise SelfTestError("selftest.json has no cases")
    if len(raw) > MAX_CASES:
        raise SelfTestError(f"selftest.json has {len(raw)} cases, more than {MAX_CASES}")
    cases = []
    for number, case in enumerate(raw):
        try:
            cases.append(
                SelftestCase(
                    history=tuple(View.from_dict(v) for v in case["history"]),
                    candidates=tuple(Candidate.from_dict(c) for c in case["candidates"]),
                    now=float(case["now"]),
                    features=np.asarray(case["features"], dtype=np.float32),
                    predictions=np.asarray(case["predictions"], dtype=np.float32),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SelfTestError(f"selftest case {number} is malformed: {e}") from e
    return cases


def judge(number: int, case: SelftestCase, features: np.ndarray, predictions: np.ndarray) -> None:
    """Raise unless the package's answer to ``case`` matches the golden vectors.

    Raises:
        SelfTestError: a feature or a prediction differs (or has the wrong shape).
    """
    if features.shape != case.features.shape or not np.allclose(features, case.features, rtol=FEATURE_RTOL, atol=0.0):
        raise SelfTestError(f"selftest case {number}: features differ from the golden vector")
    if predictions.shape != case.predictions.shape or not np.allclose(
        predictions, case.predictions, rtol=PREDICTION_RTOL, atol=PREDICTION_ATOL
    ):
        raise SelfTestError(
            f"selftest case {number}: predictions {predictions.tolist()} differ from golden {case.predictions.tolist()}"
        )


def check_answers(cases: Sequence[SelftestCase], answer: Any) -> None:
    """Judge every case, in order, with ``answer(case) -> (features, predictions)`` computed by the package.

    Raises:
        SelfTestError: an answer differs from its golden vectors.
    """
    for number, case in enumerate(cases):
        features, predictions = answer(case)
        judge(number, case, features, predictions)
