"""Rewrite ``ai.onnx.ml`` ``TreeEnsembleRegressor`` (opset 1/3) to the opset-5 ``TreeEnsemble`` op.

Why: the old op spells every node with a mode *string*, a tree id, a node id and a hit rate,
and every leaf as a pseudo-node plus a (tree, node, target, weight) row. ``TreeEnsemble``
keeps only interior nodes (mode as one byte in a tensor, feature, split, two children with
leaf flags) and a flat leaf table, which makes the model about three times smaller and
quicker for ONNX Runtime (>= 1.18) to load. The rewrite is exact: same thresholds (float32,
as the regressor stored them), same comparison modes, same missing-value directions, same
leaf weights; only a non-zero ``base_values`` becomes an explicit ``Add``. The parity gate
still checks the result against the training side.

No converter emits ``TreeEnsemble`` yet (onnxmltools 1.16 and skl2onnx 1.20 both write the
regressor), hence this module.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pitahaya.packaging.errors import ConversionError

ML_DOMAIN = "ai.onnx.ml"
TREE_ENSEMBLE_OPSET = 5
#: ``TreeEnsemble`` needs this default-domain opset (the pair ai.onnx.ml 5 / onnx 21 shipped together).
DEFAULT_OPSET = 21

#: ``nodes_modes`` byte per ``TreeEnsembleRegressor`` mode string.
_MODES = {
    b"BRANCH_LEQ": 0,
    b"BRANCH_LT": 1,
    b"BRANCH_GTE": 2,
    b"BRANCH_GT": 3,
    b"BRANCH_EQ": 4,
    b"BRANCH_NEQ": 5,
}
_LEAF = b"LEAF"
_AGGREGATE_SUM = 1


@dataclass
class _Tree:
    """One tree of the regressor, by node id."""

    modes: dict[int, bytes] = field(default_factory=dict)
    features: dict[int, int] = field(default_factory=dict)
    values: dict[int, float] = field(default_factory=dict)
    true_ids: dict[int, int] = field(default_factory=dict)
    false_ids: dict[int, int] = field(default_factory=dict)
    missing_true: dict[int, int] = field(default_factory=dict)
    weights: dict[int, float] = field(default_factory=dict)


@dataclass
class _Arrays:
    """The ``TreeEnsemble`` attribute arrays being filled, trees one after another."""

    featureids: list[int] = field(default_factory=list)
    modes: list[int] = field(default_factory=list)
    splits: list[float] = field(default_factory=list)
    truenodeids: list[int] = field(default_factory=list)
    trueleafs: list[int] = field(default_factory=list)
    falsenodeids: list[int] = field(default_factory=list)
    falseleafs: list[int] = field(default_factory=list)
    missing_true: list[int] = field(default_factory=list)
    leaf_weights: list[float] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes by name: ints, floats, bytes, lists of them or tensors, as onnx decodes each."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _floats(attrs: dict[str, Any], name: str) -> list[float]:
    """A float-list attribute, read from its ``_as_tensor`` spelling (doubles) when that is the one set."""
    if name in attrs:
        return [float(v) for v in attrs[name]]
    return [float(v) for v in numpy_helper.to_array(attrs[name + "_as_tensor"])]


def _trees(attrs: dict[str, Any]) -> dict[int, _Tree]:
    """Group the regressor's parallel node and target lists into trees."""
    trees: dict[int, _Tree] = defaultdict(_Tree)
    n = len(attrs["nodes_nodeids"])
    missing = attrs.get("nodes_missing_value_tracks_true") or [0] * n
    values = _floats(attrs, "nodes_values")
    for i in range(n):
        tree = trees[attrs["nodes_treeids"][i]]
        nid = attrs["nodes_nodeids"][i]
        tree.modes[nid] = attrs["nodes_modes"][i]
        tree.features[nid] = attrs["nodes_featureids"][i]
        tree.values[nid] = values[i]
        tree.true_ids[nid] = attrs["nodes_truenodeids"][i]
        tree.false_ids[nid] = attrs["nodes_falsenodeids"][i]
        tree.missing_true[nid] = int(missing[i])
    weights = _floats(attrs, "target_weights")
    for tid, nid, target, weight in zip(
        attrs["target_treeids"],
        attrs["target_nodeids"],
        attrs["target_ids"],
        weights,
        strict=True,
    ):
        if target != 0:
            raise ConversionError("only single-target tree regressors can be rewritten to TreeEnsemble")
        trees[tid].weights[nid] = trees[tid].weights.get(nid, 0.0) + weight
    return trees


def _append_tree(tree: _Tree, out: _Arrays) -> None:
    """Append one tree's interior nodes (depth-first from node 0) and its leaves to ``out``."""

    def leaf(nid: int) -> int:
        out.leaf_weights.append(tree.weights.get(nid, 0.0))
        return len(out.leaf_weights) - 1

    def child(nid: int) -> tuple[int, int]:
        """(index, is_leaf) of a child, appending it (and its subtree) first."""
        return (leaf(nid), 1) if tree.modes[nid] == _LEAF else (interior(nid), 0)

    def interior(nid: int) -> int:
        mode = tree.modes[nid]
        if mode not in _MODES:
            raise ConversionError(f"tree node mode {mode!r} has no TreeEnsemble equivalent")
        index = len(out.modes)
        out.featureids.append(tree.features[nid])
        out.modes.append(_MODES[mode])
        out.splits.append(tree.values[nid])
        out.missing_true.append(tree.missing_true[nid])
        for lst in (out.truenodeids, out.trueleafs, out.falsenodeids, out.falseleafs):
            lst.append(0)
        out.truenodeids[index], out.trueleafs[index] = child(tree.true_ids[nid])
        out.falsenodeids[index], out.falseleafs[index] = child(tree.false_ids[nid])
        return index

    if tree.modes[0] == _LEAF:  # a constant tree: TreeEnsemble roots must be interior nodes
        index = len(out.modes)
        only = leaf(0)
        out.splits.append(0.0)
        for ints, value in (
            (out.featureids, 0), (out.modes, 0), (out.missing_true, 0),
            (out.truenodeids, only), (out.trueleafs, 1), (out.falsenodeids, only), (out.falseleafs, 1),
        ):  # fmt: skip
            ints.append(value)
        out.roots.append(index)
    else:
        out.roots.append(interior(0))


def _tree_ensemble_nodes(node: onnx.NodeProto, output_type: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The ``TreeEnsemble`` node (plus an ``Add`` for base values) replacing one regressor."""
    attrs = _attributes(node)
    if attrs.get("aggregate_function", b"SUM") != b"SUM" or attrs.get("post_transform", b"NONE") != b"NONE":
        raise ConversionError("only SUM aggregation without post-transform can be rewritten to TreeEnsemble")
    if attrs.get("n_targets", 1) != 1:
        raise ConversionError("only single-target tree regressors can be rewritten to TreeEnsemble")
    out = _Arrays()
    for _, tree in sorted(_trees(attrs).items()):
        _append_tree(tree, out)
    dtype = helper.tensor_dtype_to_np_dtype(output_type)
    base = [float(v) for v in (attrs.get("base_values") or [])]
    tree_output = node.output[0] + "_trees" if any(base) else node.output[0]
    ensemble = helper.make_node(
        "TreeEnsemble",
        list(node.input),
        [tree_output],
        name=node.name,
        domain=ML_DOMAIN,
        n_targets=1,
        aggregate_function=_AGGREGATE_SUM,
        post_transform=0,
        tree_roots=out.roots,
        nodes_featureids=out.featureids,
        nodes_modes=numpy_helper.from_array(np.array(out.modes, dtype=np.uint8), "nodes_modes"),
        nodes_splits=numpy_helper.from_array(np.array(out.splits, dtype=dtype), "nodes_splits"),
        nodes_truenodeids=out.truenodeids,
        nodes_trueleafs=out.trueleafs,
        nodes_falsenodeids=out.falsenodeids,
        nodes_falseleafs=out.falseleafs,
        nodes_missing_value_tracks_true=out.missing_true if any(out.missing_true) else None,
        leaf_targetids=[0] * len(out.leaf_weights),
        leaf_weights=numpy_helper.from_array(np.array(out.leaf_weights, dtype=dtype), "leaf_weights"),
    )
    if not any(base):
        return [ensemble], []
    bias = numpy_helper.from_array(np.array([base], dtype=dtype), node.output[0] + "_base")
    return [
        ensemble,
        helper.make_node("Add", [tree_output, bias.name], [node.output[0]], name=node.name + "_base"),
    ], [bias]


def to_tree_ensemble(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every ``TreeEnsembleRegressor`` replaced by ``TreeEnsemble``.

    Raises:
        ConversionError: a regressor uses a feature ``TreeEnsemble`` cannot express here
            (several targets, non-SUM aggregation, a post-transform, an unknown mode).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    value_types = {
        v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output) + list(graph.value_info)
    }
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "TreeEnsembleRegressor" and node.domain == ML_DOMAIN:
            elem_type = value_types.get(node.input[0], TensorProto.FLOAT)
            replacement, initializers = _tree_ensemble_nodes(node, elem_type)
            nodes.extend(replacement)
            graph.initializer.extend(initializers)
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    opsets = {entry.domain: entry.version for entry in out.opset_import}
    opsets[ML_DOMAIN] = TREE_ENSEMBLE_OPSET
    opsets[""] = max(opsets.get("", 0), DEFAULT_OPSET)
    del out.opset_import[:]
    out.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in sorted(opsets.items()))
    out.ir_version = max(out.ir_version, helper.find_min_ir_version_for(list(out.opset_import)))
    return out
