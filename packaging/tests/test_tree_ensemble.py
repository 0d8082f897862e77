import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pitahaya.packaging.convert import inference_session
from pitahaya.packaging.tree_ensemble import to_tree_ensemble

# One split on feature 0 at 0.5: left leaf 1.0, right leaf 2.0.
_SPLITS, _WEIGHTS = [0.5, 0.0, 0.0], [1.0, 2.0]


def _regressor(*, as_tensor: bool) -> onnx.ModelProto:
    """A one-split ``TreeEnsembleRegressor``, its values as float lists or as double tensors."""
    if as_tensor:
        elem_type = TensorProto.DOUBLE
        values = {
            "nodes_values_as_tensor": numpy_helper.from_array(np.array(_SPLITS)),
            "target_weights_as_tensor": numpy_helper.from_array(np.array(_WEIGHTS)),
        }
    else:
        elem_type = TensorProto.FLOAT
        values = {"nodes_values": _SPLITS, "target_weights": _WEIGHTS}
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["x"],
        ["y"],
        domain="ai.onnx.ml",
        n_targets=1,
        nodes_treeids=[0, 0, 0],
        nodes_nodeids=[0, 1, 2],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
        nodes_featureids=[0, 0, 0],
        nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0],
        target_treeids=[0, 0],
        target_nodeids=[1, 2],
        target_ids=[0, 0],
        **values,
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", elem_type, [None, 1])],
        [helper.make_tensor_value_info("y", elem_type, [None, 1])],
    )
    opsets = [helper.make_opsetid("", 15), helper.make_opsetid("ai.onnx.ml", 3)]
    return helper.make_model(graph, ir_version=10, opset_imports=opsets)


@pytest.mark.parametrize("as_tensor", [False, True], ids=["float-lists", "double-tensors"])
def test_the_rewrite_reads_either_spelling_of_splits_and_weights(as_tensor):
    model = to_tree_ensemble(_regressor(as_tensor=as_tensor))
    assert [node.op_type for node in model.graph.node] == ["TreeEnsemble"]
    x = np.array([[0.2], [0.5], [0.9]], dtype=np.float64 if as_tensor else np.float32)
    (got,) = inference_session(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(got.reshape(-1), [1.0, 1.0, 2.0])
