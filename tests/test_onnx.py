"""ONNX export through skl2onnx: onnxruntime predicts what fastmlp predicts, for every
activation (leaky ReLU included), classifier and regressor, float32 and float64, alone and
at the end of a Pipeline."""
import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastmlp import MLPClassifier, MLPRegressor

pytest.importorskip("skl2onnx", reason="ONNX export needs the [onnx] extra")
ort = pytest.importorskip("onnxruntime", reason="the check runs the graph in onnxruntime")
from fastmlp.onnx import to_onnx  # noqa: E402

ACTIVATIONS = ["identity", "logistic", "tanh", "relu", "leaky_relu"]
#: onnxruntime against fastmlp: a float32 graph evaluates in float32, with its own
#: summation order and exp/tanh; float64 agrees to rounding.
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-10}


def run(onnx_model, X):
    session = ort.InferenceSession(onnx_model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_graph_predicts_as_fastmlp(activation, dtype, n_classes):
    X, y = load_iris(return_X_y=True)
    keep = y < n_classes
    X, y = ((X[keep] - X.mean(0)) / X.std(0)).astype(dtype), np.array(["a", "b", "c"])[y[keep]]
    est = MLPClassifier((8, 5), activation=activation, leaky_slope=0.2, max_iter=60,
                        random_state=0).fit(X, y)
    labels, proba = run(to_onnx(est, X[:1], options={"zipmap": False}), X)
    np.testing.assert_allclose(proba, est.predict_proba(X), atol=TOLERANCE[dtype])
    agree = labels == est.predict(X)
    assert agree.mean() == 1 or (dtype == np.float32 and agree.mean() > 0.99)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_outputs, loss", [(1, "squared_error"), (2, "squared_error"),
                                             (1, "poisson")])
def test_regressor_graph_predicts_as_fastmlp(activation, dtype, n_outputs, loss):
    X, y = make_regression(80, 6, n_targets=n_outputs, random_state=0)
    y = np.exp(y / y.std()) if loss == "poisson" else y / y.std()
    est = MLPRegressor(loss=loss, hidden_layer_sizes=(7,), activation=activation,
                       leaky_slope=0.3, max_iter=50, random_state=0).fit(X.astype(dtype), y)
    (out,) = run(to_onnx(est, X[:1].astype(dtype)), X.astype(dtype))
    expected = est.predict(X.astype(dtype)).reshape(len(X), n_outputs)
    np.testing.assert_allclose(out, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def test_a_pipeline_with_a_leaky_relu_network_exports():
    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), MLPClassifier(
        (6,), activation="leaky_relu", max_iter=40, random_state=0)).fit(X, y)
    onnx_model = to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False})
    assert any(node.op_type == "LeakyRelu" and node.attribute[0].f == pytest.approx(0.01)
               for node in onnx_model.graph.node)
    labels, proba = run(onnx_model, X.astype(np.float32))
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=TOLERANCE[np.float32])
    assert (labels == model.predict(X)).mean() > 0.99


def test_a_saved_regression_pipeline_exports_with_its_target_scaling(tmp_path):
    """What `fastmlp train --csv F --regress` saves: columns imputed and scaled, the target
    standardised by a TransformedTargetRegressor (a converter fastmlp.onnx registers). In
    float32: onnxruntime's Imputer, which skl2onnx writes for a SimpleImputer, has no
    float64 kernel."""
    from sklearn.datasets import load_diabetes

    import fastmlp
    from fastmlp import tabular

    dtype = np.float32
    data = load_diabetes(as_frame=True, scaled=False)
    X = tabular.as_features(data.data, dtype)
    X.iloc[::7, 2] = np.nan  # a gap the imputer fills
    model, _ = tabular.pipeline(X, MLPRegressor(hidden_layer_sizes=(8,), max_iter=30,
                                                random_state=0), regress=True, dtype=dtype)
    model.fit(X, data.target)
    model = fastmlp.load(fastmlp.save(model, tmp_path / "m.fastmlp"))
    onnx_model = to_onnx(model, X[:1])
    session = ort.InferenceSession(onnx_model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    feeds = {i.name: X[[i.name]].to_numpy() for i in session.get_inputs()}
    (out,) = session.run(None, feeds)
    expected = model.predict(X)
    np.testing.assert_allclose(out.ravel(), expected, rtol=TOLERANCE[dtype] * 10,
                               atol=TOLERANCE[dtype] * np.abs(expected).max())


def test_a_target_transformer_that_is_not_a_scaler_is_named():
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import QuantileTransformer

    X, y = make_regression(60, 3, random_state=0)
    model = TransformedTargetRegressor(
        MLPRegressor(hidden_layer_sizes=(3,), max_iter=5, random_state=0),
        transformer=QuantileTransformer(n_quantiles=10)).fit(X, y)
    with pytest.raises(TypeError, match="not QuantileTransformer"):
        to_onnx(model, X[:1].astype(np.float32))


@pytest.mark.parametrize("scaler", ["StandardScaler", "MinMaxScaler", "MaxAbsScaler",
                                    "RobustScaler"])
@pytest.mark.parametrize("n_targets", [1, 2])
def test_target_scaling_is_undone_in_the_graph(scaler, n_targets):
    from sklearn import preprocessing
    from sklearn.compose import TransformedTargetRegressor

    X, y = make_regression(80, 4, n_targets=n_targets, random_state=0)
    model = TransformedTargetRegressor(
        MLPRegressor(hidden_layer_sizes=(6,), max_iter=20, random_state=0),
        transformer=getattr(preprocessing, scaler)()).fit(X, y + 50)
    (out,) = run(to_onnx(model, X[:1]), X)
    np.testing.assert_allclose(out, model.predict(X).reshape(len(X), n_targets),
                               rtol=1e-10, atol=1e-8)
