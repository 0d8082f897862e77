"""Tree models (LightGBM, scikit-learn) -> ONNX model bytes that a device runs with ONNX Runtime.

Workflow: `convert_lightgbm` / `convert_sklearn` (1) snap the model's split thresholds onto
the float32 grid, (2) convert it with onnxmltools / skl2onnx to one ``TreeEnsembleRegressor``,
(3) rewrite that to the compact opset-5 ``TreeEnsemble`` op (`to_tree_ensemble`), (4) rename
the graph's input and output to fixed names the manifest records, and (5) strip every field
that would make two conversions of the same model differ, so package builds are reproducible.
A model with quantile heads (one more model of the same family per level) goes through (1) to
(3) head by head; then one graph runs every ``TreeEnsemble`` on the same input and concatenates
their outputs (`join_outputs`): ``[N, 1 + heads]``, the point prediction, then each head's.
(One multi-target ``TreeEnsemble`` holding all the trees computes the same, but ONNX Runtime
runs it 1.5x slower on one row and 1.8x on eight.)

Why (1): LightGBM (and scikit-learn's histogram trees) compare a feature, widened to double, with a double threshold; ONNX's
TreeEnsemble stores thresholds as float32 *rounded to nearest*, so a float32 feature lying
between the two values takes the other branch (seen on ~0.1% of real rows, off by seconds).
For a float32 ``x``, ``x <= t`` holds exactly when ``x <= round_down_to_float32(t)``, so
rounding every numerical threshold *down* changes no LightGBM prediction on float32 input
and makes the float32 ONNX thresholds exact. scikit-learn's bin thresholds are midpoints
between float64 values, so the same holds for them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import onnx
import onnxmltools
import onnxruntime as ort
import skl2onnx
from onnxmltools.convert.common.data_types import FloatTensorType
from skl2onnx.common.data_types import FloatTensorType as SklearnFloatTensorType
from sklearn.ensemble import HistGradientBoostingRegressor

from pitahaya.client_runtime import TensorSpec

from pitahaya.packaging.errors import ConversionError
from pitahaya.packaging.tree_ensemble import to_tree_ensemble

#: Highest default-domain opset the converters may use (the `to_tree_ensemble` rewrite then
#: raises it to the opset shipped with ``ai.onnx.ml`` 5); devices need ONNX Runtime >= 1.18.
TARGET_OPSET = 15
#: The ``ai.onnx.ml`` opset asked of skl2onnx: its regressor output, before the rewrite.
SKLEARN_ML_OPSET = 3
INPUT_NAME = "features"
OUTPUT_NAME = "prediction"
#: Graph name written instead of onnxmltools' random uuid.
GRAPH_NAME = "pitahaya"

_CATEGORICAL_BIT = 1


@dataclass(frozen=True)
class ConvertedModel:
    """An ONNX model and the facts the manifest records about it.

    Attributes:
        model_bytes: Serialized ONNX model, byte-identical for the same booster.
        input: Input spec: float32 ``[None, n_features]`` named `INPUT_NAME`.
        output: Output spec: float32 ``[None, 1 + heads]`` named `OUTPUT_NAME`.
        opsets: Opset version per domain (``""`` is the default ONNX domain).
    """

    model_bytes: bytes
    input: TensorSpec
    output: TensorSpec
    opsets: dict[str, int]


def _round_down_to_float32(values: np.ndarray) -> np.ndarray:
    """Largest float32 not above each double (as doubles)."""
    nearest = values.astype(np.float32)
    above = nearest.astype(np.float64) > values
    nearest[above] = np.nextafter(nearest[above], np.float32(-np.inf))
    return nearest.astype(np.float64)


def snap_thresholds_to_float32(booster: lgb.Booster) -> lgb.Booster:
    """A copy of ``booster`` whose numerical thresholds lie on the float32 grid.

    Predictions on float32 input are unchanged (see the module docstring). Categorical
    splits, whose ``threshold`` is an index into a category table, are left alone. The
    model text's ``tree_sizes`` index is dropped because the rewritten trees change length;
    LightGBM then parses the trees sequentially.
    """
    lines = booster.model_to_string().split("\n")
    threshold_at: int | None = None
    for i, line in enumerate(lines):
        if line.startswith("threshold="):
            threshold_at = i
        elif line.startswith("decision_type=") and threshold_at is not None:
            values = np.array(lines[threshold_at].removeprefix("threshold=").split(), dtype=np.float64)
            categorical = (
                np.array(line.removeprefix("decision_type=").split(), dtype=np.int64) & _CATEGORICAL_BIT
            ) != 0
            snapped = np.where(categorical, values, _round_down_to_float32(values))
            lines[threshold_at] = "threshold=" + " ".join(repr(float(v)) for v in snapped)
            threshold_at = None
    return lgb.Booster(model_str="\n".join(line for line in lines if not line.startswith("tree_sizes=")))


def snap_sklearn_thresholds_to_float32(
    model: HistGradientBoostingRegressor,
) -> HistGradientBoostingRegressor:
    """A copy of a fitted ``HistGradientBoostingRegressor`` whose numerical thresholds lie on
    the float32 grid; predictions on float32 input are unchanged (see the module docstring)."""
    snapped = copy.deepcopy(model)
    for predictors in snapped._predictors:  # skl2onnx reads the same private trees
        for predictor in predictors:
            nodes = predictor.nodes
            numerical = ~nodes["is_leaf"].astype(bool) & ~nodes["is_categorical"].astype(bool)
            nodes["num_threshold"][numerical] = _round_down_to_float32(nodes["num_threshold"][numerical])
    return snapped


def join_outputs(models: Sequence[onnx.ModelProto]) -> onnx.ModelProto:
    """One model computing each of ``models`` on the first one's input, their single outputs
    concatenated in order along axis 1 under the first one's output name.

    Every model must take one input of the same type and output ``[N, 1]``; each model's node,
    tensor and initializer names get a prefix of its own so they cannot collide.
    """
    first = models[0]
    input_name, output_name = first.graph.input[0].name, first.graph.output[0].name
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    outputs = []
    for i, model in enumerate(models):
        graph = model.graph
        if len(graph.input) != 1 or len(graph.output) != 1:
            raise ConversionError("a head's model must take one input and give one output")

        def rename(name: str, graph: onnx.GraphProto = graph, prefix: str = f"output{i}_") -> str:
            return input_name if name == graph.input[0].name else prefix + name if name else name

        for node in graph.node:
            renamed_node = onnx.NodeProto()
            renamed_node.CopyFrom(node)
            renamed_node.name = rename(node.name)
            renamed_node.input[:] = [rename(name) for name in node.input]
            renamed_node.output[:] = [rename(name) for name in node.output]
            nodes.append(renamed_node)
        for tensor in graph.initializer:
            renamed = onnx.TensorProto()
            renamed.CopyFrom(tensor)
            renamed.name = rename(tensor.name)
            initializers.append(renamed)
        outputs.append(rename(graph.output[0].name))
    nodes.append(onnx.helper.make_node("Concat", outputs, [output_name], name="outputs", axis=1))
    output = onnx.helper.make_tensor_value_info(
        output_name, first.graph.output[0].type.tensor_type.elem_type, [None, len(models)]
    )
    graph = onnx.helper.make_graph(nodes, first.graph.name, [first.graph.input[0]], [output], initializers)
    joined = onnx.helper.make_model(graph, opset_imports=first.opset_import)
    joined.ir_version = first.ir_version
    return joined


def _make_deterministic(model: onnx.ModelProto) -> None:
    """Rename input/output and replace random or environment-dependent fields with constants."""
    graph = model.graph
    graph.name = GRAPH_NAME
    model.doc_string = ""
    graph.doc_string = ""
    renames = {graph.input[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}
    for node in graph.node:
        node.doc_string = ""
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    graph.input[0].name = INPUT_NAME
    graph.output[0].name = OUTPUT_NAME
    del model.metadata_props[:]


def convert_lightgbm(
    booster: lgb.Booster,
    *,
    heads: Sequence[lgb.Booster] = (),
    target_opset: int = TARGET_OPSET,
    compact: bool = True,
) -> ConvertedModel:
    """Convert a LightGBM regression booster (and its quantile heads) to a deterministic ONNX model.

    Args:
        booster: A trained regression booster taking ``booster.num_feature()`` features.
        heads: Boosters of further outputs on the same features (the quantile heads, in order).
        target_opset: Highest default-domain opset the converter may use.
        compact: Rewrite to the opset-5 ``TreeEnsemble`` op (False keeps the regressor;
            only the size benchmark wants that; not with heads).

    Returns:
        The model bytes, its input/output specs and the opsets it imports.

    Raises:
        ConversionError: onnxmltools rejects a booster, a head takes other features, or the
            result fails ONNX checks.
    """
    n_features = booster.num_feature()

    def convert(one: lgb.Booster) -> onnx.ModelProto:
        if one.num_feature() != n_features:
            raise ConversionError(f"a head takes {one.num_feature()} features, the model {n_features}")
        try:
            return onnxmltools.convert_lightgbm(
                snap_thresholds_to_float32(one),
                initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                target_opset=target_opset,
                zipmap=False,
            )
        except Exception as e:  # onnxmltools raises untyped errors
            raise ConversionError(f"LightGBM -> ONNX conversion failed: {type(e).__name__}: {e}") from e

    return _finish(convert(booster), [convert(h) for h in heads], n_features, compact=compact, source="LightGBM")


def convert_sklearn(
    model: Any, *, heads: Sequence[Any] = (), target_opset: int = TARGET_OPSET, compact: bool = True
) -> ConvertedModel:
    """Convert a fitted scikit-learn ``HistGradientBoostingRegressor`` (and its quantile heads)
    to a deterministic ONNX model.

    Args:
        model: The fitted regressor (other scikit-learn models are refused: the float32
            threshold guarantee is only established for histogram trees).
        heads: Fitted regressors of further outputs on the same features, in order.
        target_opset: Highest default-domain opset the converter may use.
        compact: Rewrite to the opset-5 ``TreeEnsemble`` op.

    Raises:
        ConversionError: not a fitted ``HistGradientBoostingRegressor``, skl2onnx rejects it,
            a head takes other features, or the result fails ONNX checks.
    """
    n_features = getattr(model, "n_features_in_", None)

    def convert(one: Any) -> onnx.ModelProto:
        if not isinstance(one, HistGradientBoostingRegressor) or not hasattr(one, "_predictors"):
            raise ConversionError(f"expected a fitted HistGradientBoostingRegressor, got {type(one).__name__}")
        if one.n_features_in_ != n_features:
            raise ConversionError(f"a head takes {one.n_features_in_} features, the model {n_features}")
        try:
            return skl2onnx.convert_sklearn(
                snap_sklearn_thresholds_to_float32(one),
                initial_types=[(INPUT_NAME, SklearnFloatTensorType([None, int(one.n_features_in_)]))],
                target_opset={"": target_opset, "ai.onnx.ml": SKLEARN_ML_OPSET},
            )
        except Exception as e:  # skl2onnx raises untyped errors
            raise ConversionError(f"scikit-learn -> ONNX conversion failed: {type(e).__name__}: {e}") from e

    main = convert(model)
    return _finish(main, [convert(h) for h in heads], int(model.n_features_in_), compact=compact, source="scikit-learn")


def _finish(
    model: onnx.ModelProto, heads: Sequence[onnx.ModelProto], n_features: int, *, compact: bool, source: str
) -> ConvertedModel:
    """Compact (joining the heads), normalize and check a freshly converted model; describe it for the manifest."""
    if heads and not compact:
        raise ConversionError("quantile heads are joined by the TreeEnsemble rewrite: convert them compact")
    try:
        if compact:
            model = to_tree_ensemble(model)
        if heads:
            model = join_outputs([model, *(to_tree_ensemble(head) for head in heads)])
        _make_deterministic(model)
        onnx.checker.check_model(model, full_check=True)
    except ConversionError:
        raise
    except Exception as e:  # onnx raises untyped errors
        raise ConversionError(f"{source} -> ONNX conversion produced an invalid model: {type(e).__name__}: {e}") from e
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise ConversionError("converted model must have exactly one input and one output")
    return ConvertedModel(
        model_bytes=model.SerializeToString(deterministic=True),
        input=TensorSpec(INPUT_NAME, "float32", (None, n_features)),
        output=TensorSpec(OUTPUT_NAME, "float32", (None, 1 + len(heads))),
        opsets={entry.domain: entry.version for entry in sorted(model.opset_import, key=lambda e: e.domain)},
    )


def inference_session(model_bytes: bytes) -> ort.InferenceSession:
    """A one-thread CPU session, as on a device: the summation order of trees, hence every
    float32 output bit, is then fixed, so golden predictions are reproducible byte for byte."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
