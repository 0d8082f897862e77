"""The latency yardstick is one fixed workload: the unit every recorded decision cost is in."""

import hashlib

import numpy as np
import onnx
import onnxruntime as ort

from pitahaya.packaging.latency import REFERENCE_FEATURES, REFERENCE_TREES, Yardstick, reference_model

#: Changing the reference model rescales every decision cost and budget: do it on purpose only.
REFERENCE_SHA256 = "d3b2439d8f92"


def test_the_reference_model_is_the_same_bytes_every_time() -> None:
    first, again = reference_model(), reference_model()
    assert first == again
    assert hashlib.sha256(first).hexdigest().startswith(REFERENCE_SHA256)


def test_the_reference_model_is_a_valid_ensemble_that_onnx_runtime_runs() -> None:
    model = onnx.load_from_string(reference_model())
    onnx.checker.check_model(model)
    (node,) = model.graph.node
    tree_ids = next(a for a in node.attribute if a.name == "nodes_treeids").ints
    assert node.op_type == "TreeEnsembleRegressor" and len(set(tree_ids)) == REFERENCE_TREES
    session = ort.InferenceSession(reference_model(), providers=["CPUExecutionProvider"])
    rows = np.random.default_rng(0).standard_normal((5, REFERENCE_FEATURES)).astype(np.float32)
    (out,) = session.run(None, {"X": rows})
    assert out.shape == (5, 1) and np.isfinite(out).all() and len(np.unique(out)) > 1


def test_the_yardstick_times_a_run() -> None:
    assert Yardstick().time_ns() > 0
