"""ONNX export: converters for fastmlp's estimators, registered with skl2onnx (the optional
extra `[onnx]`), so `skl2onnx.to_onnx` takes a fastmlp estimator or a Pipeline holding one.

Importing this module registers them; `to_onnx` is skl2onnx's, with registration assured.
The classifier reuses skl2onnx's own MLPClassifier converter (labels, probabilities,
zipmap options); a leaky ReLU, which scikit-learn's MLP lacks, is written as ONNX's
LeakyRelu with the estimator's slope. The regressor's graph is written here, for every
output activation (identity, and exp for the Poisson loss) and any number of outputs.
"""
from __future__ import annotations

import numpy as np
import onnx
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from skl2onnx import update_registered_converter
from skl2onnx.common._container import ModelComponentContainer
from skl2onnx.common._topology import Operator, Scope
from skl2onnx.common._apply_operation import apply_add, apply_cast, apply_reshape
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, guess_proto_type
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from skl2onnx.operator_converters.multilayer_perceptron import convert_sklearn_mlp_classifier
from skl2onnx.proto import onnx_proto

from .estimators import MLPClassifier, MLPRegressor

#: ONNX operators for fastmlp's activations (leaky_relu: LeakyRelu with alpha).
OPERATORS = {"identity": "Identity", "tanh": "Tanh", "logistic": "Sigmoid", "relu": "Relu",
             "leaky_relu": "LeakyRelu", "softmax": "Softmax", "exp": "Exp"}


def _proto_dtype(operator):
    dtype = guess_proto_type(operator.inputs[0].type)
    return dtype if dtype == onnx_proto.TensorProto.DOUBLE else onnx_proto.TensorProto.FLOAT


def _activation(container, scope, name, inputs, output, slope, dtype):
    if name == "leaky_relu":
        return _leaky_relu(container, scope, inputs, output, slope, dtype)
    op = OPERATORS[name]
    container.add_node(op, inputs, output, name=scope.get_unique_operator_name(op))


def _leaky_relu(container, scope, inputs, output, slope, dtype):
    """LeakyRelu(alpha=slope); onnxruntime has it in float32 only, so in float64 the same
    function as max(x, slope * x) (0 < slope < 1)."""
    if dtype != onnx_proto.TensorProto.DOUBLE:
        return container.add_node("LeakyRelu", inputs, output, alpha=float(slope),
                                  name=scope.get_unique_operator_name("LeakyRelu"))
    slope_name, scaled = (scope.get_unique_variable_name(n) for n in ("slope", "scaled"))
    container.add_initializer(slope_name, dtype, [], [float(slope)])
    x = inputs[0] if isinstance(inputs, list) else inputs
    container.add_node("Mul", [x, slope_name], scaled, name=scope.get_unique_operator_name("Mul"))
    container.add_node("Max", [x, scaled], output, name=scope.get_unique_operator_name("Max"))


class _LeakyReluAsRelu:
    """The estimator as skl2onnx's MLP converter reads it, with a leaky ReLU named relu
    (the converter knows no other), and the container turning those Relu nodes back into
    LeakyRelu with the estimator's slope."""

    def __init__(self, estimator):
        self._estimator = estimator
        self.activation = "relu"

    def __getattr__(self, name):
        return getattr(self._estimator, name)


class _Container:
    def __init__(self, container, scope, slope, dtype):
        self._container, self._scope, self._slope, self._dtype = container, scope, slope, dtype

    def add_node(self, op_type, inputs, outputs, *args, **kwargs):
        if op_type == "Relu":
            return _leaky_relu(self._container, self._scope, inputs, outputs, self._slope,
                               self._dtype)
        return self._container.add_node(op_type, inputs, outputs, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._container, name)


class _Operator:
    def __init__(self, operator, raw):
        self._operator, self.raw_operator = operator, raw

    def __getattr__(self, name):
        return getattr(self._operator, name)


def convert_classifier(scope: Scope, operator: Operator,
                       container: ModelComponentContainer) -> None:
    """Write a fastmlp.MLPClassifier's graph (skl2onnx converter).

    Parameters
    ----------
    scope : skl2onnx.common._topology.Scope
        Names the graph's variables.
    operator : skl2onnx.common._topology.Operator
        The estimator's node; `operator.raw_operator` is the estimator.
    container : skl2onnx.common._container.ModelComponentContainer
        Receives the nodes and initializers.
    """
    est = operator.raw_operator
    if est.activation == "leaky_relu":
        operator = _Operator(operator, _LeakyReluAsRelu(est))
        container = _Container(container, scope, est.leaky_slope, _proto_dtype(operator))
    convert_sklearn_mlp_classifier(scope, operator, container)


def convert_regressor(scope: Scope, operator: Operator,
                      container: ModelComponentContainer) -> None:
    """Write a fastmlp.MLPRegressor's graph (skl2onnx converter).

    MatMul, Add and the activation per layer, the output shaped (n_samples, ``n_outputs_``).

    Parameters
    ----------
    scope : skl2onnx.common._topology.Scope
        Names the graph's variables.
    operator : skl2onnx.common._topology.Operator
        The estimator's node; `operator.raw_operator` is the estimator.
    container : skl2onnx.common._container.ModelComponentContainer
        Receives the nodes and initializers.
    """
    est = operator.raw_operator
    dtype = _proto_dtype(operator)
    current = scope.get_unique_variable_name("cast_input")
    apply_cast(scope, operator.inputs[0].full_name, current, container, to=dtype)
    n_layers = len(est.coefs_)
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        w_name, b_name = (scope.get_unique_variable_name(n) for n in ("coefficient", "intercepts"))
        container.add_initializer(w_name, dtype, W.shape, np.asarray(W).ravel())
        container.add_initializer(b_name, dtype, [1, len(b)], np.asarray(b))
        product, total, out = (scope.get_unique_variable_name(n)
                               for n in ("mul_result", "add_result", "activations"))
        container.add_node("MatMul", [current, w_name], product,
                           name=scope.get_unique_operator_name("MatMul"))
        apply_add(scope, [product, b_name], total, container, broadcast=1)
        name = est.activation if i < n_layers - 1 else est.out_activation_
        _activation(container, scope, name, total, out, est.leaky_slope, dtype)
        current = out
    apply_reshape(scope, current, operator.outputs[0].full_name, container,
                  desired_shape=(-1, est.n_outputs_))


def regressor_shapes(operator: Operator) -> None:
    """Set a fastmlp.MLPRegressor node's output type (skl2onnx shape calculator).

    The output is (N, ``n_outputs_``), in the input's float type.

    Parameters
    ----------
    operator : skl2onnx.common._topology.Operator
        The estimator's node.
    """
    kind = operator.inputs[0].type
    cls = type(kind) if isinstance(kind, (FloatTensorType, DoubleTensorType)) else FloatTensorType
    operator.outputs[0].type = cls([operator.inputs[0].get_first_dimension(),
                                    operator.raw_operator.n_outputs_])


def _affine_inverse(transformer):
    """(a, b) with transformer.inverse_transform(y) = y * a + b, for the scalers a
    TransformedTargetRegressor can hold here; TypeError for any other transformer."""
    name = type(transformer).__name__
    ones = np.ones(transformer.n_features_in_)
    zeros = np.zeros(transformer.n_features_in_)
    if name == "StandardScaler":
        a = ones if transformer.scale_ is None else transformer.scale_
        return a, zeros if transformer.mean_ is None else transformer.mean_
    if name == "MinMaxScaler":
        return 1 / transformer.scale_, -transformer.min_ / transformer.scale_
    if name == "MaxAbsScaler":
        return transformer.scale_, zeros
    if name == "RobustScaler":
        a = ones if transformer.scale_ is None else transformer.scale_
        return a, zeros if transformer.center_ is None else transformer.center_
    raise TypeError(f"ONNX export of a TransformedTargetRegressor takes a scaler as its "
                    f"transformer (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler), "
                    f"not {name}")


def convert_target_regressor(scope: Scope, operator: Operator,
                             container: ModelComponentContainer) -> None:
    """Write a TransformedTargetRegressor's graph: its regressor's, then the scaler undone.

    scikit-learn's TransformedTargetRegressor (as ``fastmlp train --regress`` saves it),
    with a scaler as its transformer: the target's scaling is affine, so its inverse is a
    Mul and an Add on the regressor's output.

    Parameters
    ----------
    scope : skl2onnx.common._topology.Scope
        Names the graph's variables.
    operator : skl2onnx.common._topology.Operator
        The estimator's node; `operator.raw_operator` is the estimator.
    container : skl2onnx.common._container.ModelComponentContainer
        Receives the nodes and initializers.
    """
    from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
    from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxMul, OnnxReshapeApi13

    est = operator.raw_operator
    a, b = _affine_inverse(est.transformer_)
    dtype = np.float64 if _proto_dtype(operator) == onnx_proto.TensorProto.DOUBLE else np.float32
    version = container.target_opset
    width = len(a)
    y = OnnxReshapeApi13(OnnxSubEstimator(est.regressor_, operator.inputs[0],
                                          op_version=version),
                         np.array([-1, width], dtype=np.int64), op_version=version)
    out = OnnxAdd(OnnxMul(y, a.astype(dtype).reshape(1, -1), op_version=version),
                  b.astype(dtype).reshape(1, -1), op_version=version,
                  output_names=[operator.outputs[0]])
    out.add_to(scope=scope, container=container)


def target_regressor_shapes(operator: Operator) -> None:
    """Set a TransformedTargetRegressor node's output type (skl2onnx shape calculator).

    Parameters
    ----------
    operator : skl2onnx.common._topology.Operator
        The estimator's node.
    """
    kind = operator.inputs[0].type
    cls = type(kind) if isinstance(kind, (FloatTensorType, DoubleTensorType)) else FloatTensorType
    operator.outputs[0].type = cls([operator.inputs[0].get_first_dimension(),
                                    operator.raw_operator.transformer_.n_features_in_])


def register() -> None:
    """Register fastmlp's converters with skl2onnx (again is harmless).

    Besides fastmlp's estimators, scikit-learn's TransformedTargetRegressor, which
    skl2onnx has no converter for, with a scaler as its transformer.
    """
    from sklearn.compose import TransformedTargetRegressor

    update_registered_converter(TransformedTargetRegressor, "FastmlpTransformedTarget",
                                target_regressor_shapes, convert_target_regressor)
    update_registered_converter(
        MLPClassifier, "FastmlpMLPClassifier", calculate_linear_classifier_output_shapes,
        convert_classifier, options={"zipmap": [True, False, "columns"],
                                     "output_class_labels": [False, True],
                                     "nocl": [True, False]})
    update_registered_converter(MLPRegressor, "FastmlpMLPRegressor", regressor_shapes,
                                convert_regressor)


def to_onnx(model: BaseEstimator, X: ArrayLike | None = None, **kwargs) -> onnx.ModelProto:
    """Convert a fastmlp estimator, or a pipeline holding one, to ONNX.

    This is `skl2onnx.to_onnx`, with fastmlp's converters registered.

    Parameters
    ----------
    model : estimator
        A fitted fastmlp estimator or a scikit-learn composite of one.
    X : array-like, default=None
        A sample of the input: its dtype and width type the graph's input.
    **kwargs
        Passed to `skl2onnx.to_onnx` (options, target_opset, ...).

    Returns
    -------
    onnx_model : onnx.ModelProto
        The graph; onnxruntime runs it.
    """
    from skl2onnx import to_onnx as convert

    register()
    return convert(model, X, **kwargs)


register()
