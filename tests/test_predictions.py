"""Predictions: the whole forward pass in one compiled call per chunk of rows, the estimators'
fast path for a ready ndarray with scikit-learn's own errors and warnings, chunks that change
no bit, threads predicting at once, and a prediction that overlaps a fit."""
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from helpers import tol
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor

import fastmlp
from fastmlp import MLP, MLPClassifier, MLPRegressor
from fastmlp.activations import HIDDEN_ACTIVATIONS


def _layer_by_layer(net, X):
    """The output as MLP computed it before: one forward_layer call per layer."""
    return net._forward_all(np.ascontiguousarray(X, dtype=net.dtype))[-1]


@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
def test_one_call_gives_the_layer_by_layer_output(backend, dtype, hidden):
    """Every backend, activation and dtype, against the forward_layer calls MLP made before
    (to the tolerance: those chose loops or BLAS by the batch's rows, a prediction by its
    chunk's); the labels are scikit-learn's decisions."""
    rng = np.random.default_rng(0)
    for sizes, output, loss in (([9, 33, 17, 5], "softmax", "cross_entropy"),
                                ([9, 300, 1], "logistic", "binary_cross_entropy"),
                                ([9, 4, 3], "identity", "squared_error")):
        net = MLP(sizes, hidden, output, loss, leaky_slope=0.1, dtype=dtype, backend=backend,
                  random_state=0)
        for n in (1, 7, 130):
            X = rng.normal(size=(n, sizes[0])).astype(dtype)
            kind = {"softmax": "argmax", "logistic": "threshold"}.get(output, "output_only")
            out, labels, overflow = net.predictions(X, kind)
            np.testing.assert_allclose(out, _layer_by_layer(net, X), **tol(dtype))
            assert overflow == -1
            if kind == "argmax":
                np.testing.assert_array_equal(labels, np.argmax(out, axis=1))
            elif kind == "threshold":
                np.testing.assert_array_equal(labels, (out[:, 0] > 0.5).astype(np.int64))
            else:
                assert labels is None


def test_the_twins_predict_as_the_reference(compiled_backend, dtype):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 20)).astype(dtype)
    nets = [MLP([20, 64, 32, 6], "tanh", dtype=dtype, backend=b, random_state=0)
            for b in ("numpy", compiled_backend)]
    (ref, ref_labels, _), (out, labels, _) = (n.predictions(X, "argmax") for n in nets)
    np.testing.assert_allclose(out, ref, **tol(dtype))
    np.testing.assert_array_equal(labels[np.abs(np.sort(ref, 1)[:, -1] - np.sort(ref, 1)[:, -2])
                                         > 1e-3], ref_labels[np.abs(np.sort(ref, 1)[:, -1]
                                                                    - np.sort(ref, 1)[:, -2])
                                                             > 1e-3])


def test_a_batch_cut_at_chunk_boundaries_predicts_as_the_whole(compiled_backend):
    """A row's bits depend on its chunk of _layout.prediction_rows rows alone: the pieces of a
    batch cut at multiples of them, and the batch in one kernel call (which blocks its
    GEMMs by the same rows), give the bits of the batch. (The reference's products are
    NumPy's, one BLAS call per layer, whose rounding of a row may depend on all the rows.)"""
    from fastmlp._threads import thread_limit
    from fastmlp.backends._layout import Labels, prediction_rows

    rng = np.random.default_rng(2)
    for sizes in ([40, 9, 3], [40, 300, 120, 3]):  # products below and above SMALL_WORK
        net = MLP(sizes, "relu", backend=compiled_backend, random_state=0, n_threads=1)
        rows = prediction_rows(sizes, 8)
        X = rng.normal(size=(3 * rows + 17, 40))
        whole, labels, _ = net.predictions(X, "argmax")
        for cut in (rows, 2 * rows, 3 * rows):
            first, second = net.predictions(X[:cut], "argmax"), net.predictions(X[cut:], "argmax")
            np.testing.assert_array_equal(np.vstack([first[0], second[0]]), whole)
            np.testing.assert_array_equal(np.r_[first[1], second[1]], labels)
        one_call, found = np.empty_like(whole), np.empty(len(X), np.int64)
        with thread_limit(1):  # as the network's n_threads: BLAS's threads round too
            net.backend.unchecked.predict(net.arch, net.theta, X, one_call, found,
                                          Labels.ARGMAX, rows)
        np.testing.assert_array_equal(one_call, whole)
        np.testing.assert_array_equal(found, labels)


def test_a_non_contiguous_or_other_dtype_input_is_converted_a_chunk_at_a_time(backend):
    rng = np.random.default_rng(3)
    net = MLP([12, 30, 4], "relu", dtype=np.float32, backend=backend, random_state=0)
    X = rng.normal(size=(5000, 24))[:, ::2]  # strided float64
    out = net.predictions(X)[0]
    np.testing.assert_array_equal(out, net.predictions(np.ascontiguousarray(X, np.float32))[0])
    np.testing.assert_allclose(out, _layer_by_layer(net, X), **tol(np.float32))


def test_an_overflow_is_named_even_where_tanh_would_hide_it(backend):
    """Finite inputs whose first product overflows: relu passes the inf on; tanh maps it to
    ±1, a finite output, so the layer's input is tested before its activation."""
    for hidden in ("relu", "tanh", "logistic"):
        net = MLP([3, 4, 2], hidden, "identity", "squared_error", backend=backend,
                  random_state=0)
        net.coefs_ = [np.full((3, 4), 1e200), net.coefs_[1]]
        with pytest.raises(OverflowError, match=rf"layer 0 \({hidden}\) overflowed"):
            net.forward(np.full((2, 3), 1e200))


# -- the estimators' fast path: scikit-learn's errors and warnings ------------------------------
def _pair(**params):
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0, **params)
        theirs = SkClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
        return ours, theirs, X, y


def _outcome(call):
    """(error type and message, [(warning category, message)]) of call()."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call()
            error = None
        except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
            error = (type(exc).__name__, str(exc).replace("MLPClassifier", "{estimator}"))
    return error, [(w.category.__name__, str(w.message)) for w in caught
                   if not issubclass(w.category, ConvergenceWarning)]


def _inputs(X, frame):
    """The inputs a user hands predict: ready ndarrays (the fast path) and the rest."""
    nan, inf = X[:3].copy(), X[:3].copy()
    nan[1, 2], inf[2, 0] = np.nan, np.inf
    return {
        "ready float64": X[:5], "ready float32": X[:5].astype(np.float32),
        "float16": X[:5].astype(np.float16), "Fortran": np.asfortranarray(X[:5]),
        "strided": X[:10:2], "one row": X[:1], "NaN": nan, "inf": inf,
        "too narrow": X[:3, :3], "too wide": np.c_[X[:3], X[:3]], "1-D": X[0],
        "no rows": X[:0], "3-D": X[None, :3], "ints": X[:3].astype(int),
        "complex": X[:3].astype(complex), "strings": X[:3].astype(str), "list": X[:3].tolist(),
        "frame": frame.iloc[:3], "frame, other names": frame.iloc[:3].rename(
            columns=lambda c: c + "!"), "sparse": sp.csr_matrix(X[:3]),
    }


@pytest.mark.parametrize("fitted_on", ["ndarray", "frame"])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba"])
def test_every_error_and_warning_is_scikit_learns(backend, method, fitted_on):
    ours, theirs, X, y = _pair(backend=backend)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    data = frame if fitted_on == "frame" else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(data, y)
        theirs.fit(data, y)
    for name, X_new in _inputs(X, frame).items():
        got = _outcome(lambda: getattr(ours, method)(X_new))
        want = _outcome(lambda: getattr(theirs, method)(X_new))
        assert got == want, (name, got, want)


def test_an_unfitted_estimator_raises_scikit_learns_error():
    for Estimator in (MLPClassifier, MLPRegressor):
        with pytest.raises(NotFittedError):
            Estimator().predict(np.ones((2, 3)))


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "regression",
                                  "two outputs"])
def test_predictions_are_scikit_learns_from_the_same_weights(task, backend):
    """The same weights in both (assigned): the same outputs to the tolerance, the same
    labels, through predict, predict_proba and predict_log_proba."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 6))
    y = {"binary": rng.integers(0, 2, 200), "multiclass": rng.integers(0, 4, 200),
         "multilabel": rng.integers(0, 2, (200, 3)), "regression": rng.normal(size=200),
         "two outputs": rng.normal(size=(200, 2))}[task]
    regress = task in ("regression", "two outputs")
    Ours, Theirs = (MLPRegressor, SkRegressor) if regress else (MLPClassifier, SkClassifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = Theirs(hidden_layer_sizes=(7,), max_iter=30, random_state=0).fit(X, y)
        ours = Ours(hidden_layer_sizes=(7,), max_iter=30, random_state=0,
                    backend=backend).fit(X, y)
    ours.coefs_, ours.intercepts_ = theirs.coefs_, theirs.intercepts_
    methods = ["predict"] if regress else ["predict", "predict_proba", "predict_log_proba"]
    for method in methods:
        got, want = getattr(ours, method)(X), getattr(theirs, method)(X)
        if method == "predict" and not regress:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# -- threads ----------------------------------------------------------------------------------
def test_many_threads_predict_at_once_and_agree(backend):
    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(30,), max_iter=20, random_state=0,
                            backend=backend).fit(X / 16, y)
    expected = [clf.predict_proba(X[r:r + 1] / 16)[0] for r in range(len(X))]  # one by one
    results, errors = [], []

    def predict_rows(start):
        try:
            for r in range(start, len(X), 8):
                results.append((r, clf.predict_proba(X[r:r + 1] / 16)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=predict_rows, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == len(X)
    for r, p in results:
        np.testing.assert_array_equal(p[0], expected[r])


def test_a_prediction_that_overlaps_a_refit_raises_one_clear_error(backend, monkeypatch):
    """A refit in another thread: the prediction's result would mix two models, so it is
    RuntimeError — never a shape or LabelBinarizer error — and one after the fit works."""
    X, y = load_digits(return_X_y=True)
    X = X / 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(30,), max_iter=5, random_state=0,
                            backend=backend).fit(X, y)
    started, release = threading.Event(), threading.Event()
    original = fastmlp.training._fit_stochastic

    def slow_fit(*args, **kwargs):
        started.set()
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(fastmlp.training, "_fit_stochastic", slow_fit)

    def refit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.set_params(hidden_layer_sizes=(12,)).fit(X, y % 3)

    fitting = threading.Thread(target=refit)
    fitting.start()
    assert started.wait(10)
    with pytest.raises(RuntimeError, match="being fitted in another thread"):
        clf.predict(X[:5])
    with pytest.raises(RuntimeError, match="being fitted in another thread"):
        clf.fit(X, y)  # one fit at a time
    release.set()
    fitting.join()
    assert set(clf.predict(X)) <= {0, 1, 2}


def test_a_prediction_during_which_a_fit_ran_raises(monkeypatch):
    """The fit starts and ends while the prediction computes: its count changed."""
    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(10,), max_iter=3, random_state=0).fit(X, y)
    net = clf._net
    original = type(net).predictions

    def refit_meanwhile(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X[:100], y[:100])
        return out

    monkeypatch.setattr(type(net), "predictions", refit_meanwhile)
    with pytest.raises(RuntimeError, match="being fitted in another thread"):
        clf.predict(X[:3])
