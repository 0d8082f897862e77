"""The latency gate's yardstick: a fixed ONNX Runtime workload timed beside every parity decision.

A wall-clock budget judges the build machine as much as the package: the same package measured
a p99 of 229 us on a quiet machine and 2,800-4,300 us on a busy one, where such a gate failed
good builds. So the parity replay times, right after each decision and in the same process,
one run of a fixed reference model through ONNX Runtime with the device's session settings,
and states the package's cost in those units: ``decision_cost = median(decision) /
median(reference)``. Load, CPU frequency and the machine's speed fall on both alike; what is
left is what the package itself costs. The scene's ``max_decision_cost`` budget bounds it.

The reference model is part of the unit (changing it rescales every recorded cost): a
regression tree ensemble of `REFERENCE_TREES` full trees of depth `REFERENCE_DEPTH` over
`REFERENCE_FEATURES` features, about the size of the watch_time scene's own model, built here
from a fixed seed, run on one row.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from pitahaya.client_runtime.loader import session_options

REFERENCE_TREES = 100
REFERENCE_DEPTH = 6
REFERENCE_FEATURES = 16
_SEED = 20261201


def reference_model() -> bytes:
    """The reference ensemble as ONNX bytes; the same bytes on every machine and every call."""
    rng = np.random.default_rng(_SEED)
    branches = 2**REFERENCE_DEPTH - 1  # nodes 0..branches-1 branch, the next 2**depth are leaves
    nodes = 2 * branches + 1
    attributes: dict[str, list[Any]] = {
        key: [] for key in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
                            "nodes_truenodeids", "nodes_falsenodeids", "target_ids", "target_nodeids",
                            "target_treeids", "target_weights")
    }  # fmt: skip
    for tree in range(REFERENCE_TREES):
        for node in range(nodes):
            leaf = node >= branches
            attributes["nodes_treeids"].append(tree)
            attributes["nodes_nodeids"].append(node)
            attributes["nodes_featureids"].append(0 if leaf else int(rng.integers(REFERENCE_FEATURES)))
            attributes["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            attributes["nodes_values"].append(0.0 if leaf else float(rng.standard_normal()))
            attributes["nodes_truenodeids"].append(0 if leaf else 2 * node + 1)
            attributes["nodes_falsenodeids"].append(0 if leaf else 2 * node + 2)
            if leaf:
                attributes["target_ids"].append(0)
                attributes["target_nodeids"].append(node)
                attributes["target_treeids"].append(tree)
                attributes["target_weights"].append(float(rng.standard_normal()))
    ensemble = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1, aggregate_function="SUM"
    )
    ensemble.attribute.extend(helper.make_attribute(name, values) for name, values in attributes.items())
    graph = helper.make_graph(
        [ensemble],
        "pitahaya_latency_reference",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, REFERENCE_FEATURES])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="pitahaya")
    model.ir_version = 8
    return model.SerializeToString()


class Yardstick:
    """One session of the reference model; `time_ns` times one single-row run of it."""

    def __init__(self) -> None:
        self._session = ort.InferenceSession(
            reference_model(), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
        self._row = {"X": np.random.default_rng(_SEED).standard_normal((1, REFERENCE_FEATURES)).astype(np.float32)}
        self.time_ns()  # warm-up: the first run pays for allocations no later run does

    def time_ns(self) -> int:
        started = time.perf_counter_ns()
        self._session.run(None, self._row)
        return time.perf_counter_ns() - started
