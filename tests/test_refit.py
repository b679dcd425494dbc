"""A refit that fails leaves the model that was fitted before exactly as it was.

Whatever the failure — input that does not fit, a divergence, MemoryError while the new
network is built, Ctrl-C — the weights, the optimizer state and every fitted attribute are
those before the call, and the estimator predicts and trains on as before.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from helpers import BACKENDS

from fastmlp import DivergenceError, MLPClassifier, MLPRegressor
from fastmlp.model import TrainingJob



def _digits():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16, y[:400]


def _fitted(backend, **params):
    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier((12,), max_iter=3, random_state=0, backend=backend,
                             **params).fit(X, y), X, y


def _snapshot(est, X):
    public = {name: (value.copy() if isinstance(value, np.ndarray) else
                     [v.copy() for v in value] if name in ("coefs_", "intercepts_") else
                     list(value) if isinstance(value, list) else value)
              for name, value in vars(est).items() if name.endswith("_")}
    state = est._net.optimizer_state
    moments = None if state is None else (state.first.copy(), state.second.copy(), state.t)
    return public, moments, est.predict_proba(X)


def _assert_unchanged(est, X, snapshot):
    public, moments, proba = snapshot
    assert sorted(n for n in vars(est) if n.endswith("_")) == sorted(public)
    for name, value in public.items():
        now = getattr(est, name)
        if name in ("coefs_", "intercepts_"):
            for a, b in zip(now, value):
                np.testing.assert_array_equal(a, b)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(now, value)
        else:
            assert now == value or (now != now and value != value), name
    state = est._net.optimizer_state
    if moments is None:
        assert state is None
    else:
        np.testing.assert_array_equal(state.first, moments[0])
        np.testing.assert_array_equal(state.second, moments[1])
        assert state.t == moments[2]
    np.testing.assert_array_equal(est.predict_proba(X), proba)


@pytest.mark.parametrize("warm_start", [False, True])
def test_a_diverging_refit_keeps_the_previous_model(backend, warm_start):
    X, y = _digits()
    est, _, _ = _fitted(backend, solver="sgd", warm_start=warm_start)
    before = _snapshot(est, X)
    est.set_params(learning_rate_init=1e8, momentum=0.9, max_iter=50)
    with pytest.raises(DivergenceError, match="keeps the model it had"):
        est.fit(X * 1e6, y)
    _assert_unchanged(est, X, before)
    est.set_params(learning_rate_init=0.001, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)  # and it trains on from there
    assert len(est.loss_curve_) == len(before[0]["loss_curve_"]) * warm_start + 2


@pytest.mark.parametrize("call", ["partial_fit", "warm_start"])
def test_an_error_mid_training_keeps_the_previous_model(backend, call, monkeypatch):
    """partial_fit and a warm-start fit change θ, the moments and the curves in place; an
    exception raised after some epochs (here MemoryError after the second kernel call has
    trained) undoes all of it."""
    X, y = _digits()
    est, _, _ = _fitted(backend, warm_start=call == "warm_start")
    est.partial_fit(X, y)  # the optimizer's moments exist
    original, calls = TrainingJob.run, []

    def fails_on_the_second_call(self, *args, **kwargs):
        calls.append(1)
        result = original(self, *args, **kwargs)  # θ and the moments change in place
        if len(calls) == 2:
            raise MemoryError("out of memory, as a test")
        return result

    monkeypatch.setattr(TrainingJob, "run", fails_on_the_second_call)
    if call == "partial_fit":
        est.partial_fit(X, y)  # the first call trains
        before = _snapshot(est, X)
        with pytest.raises(MemoryError):
            est.partial_fit(X, y)
    else:
        before = _snapshot(est, X)
        est.set_params(max_iter=200, tol=0.0)
        with pytest.raises(MemoryError):
            est.fit(X, y)
    assert len(calls) == 2
    _assert_unchanged(est, X, before)


def test_a_refit_on_bad_input_keeps_the_previous_model(backend):
    X, y = _digits()
    est, _, _ = _fitted(backend)
    before = _snapshot(est, X)
    wide = np.c_[X, X]
    with pytest.raises(ValueError, match="NaN"):
        est.fit(np.where(wide > 0.5, np.nan, wide), y + 10)  # new classes, width, then NaN
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        est.set_params(hidden_layer_sizes=(0,)).fit(X, y)
    est.set_params(hidden_layer_sizes=(12,))
    _assert_unchanged(est, X, before)


OUT_OF_MEMORY = r"""
import resource, sys, warnings
import numpy as np
import fastmlp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
X, y = load_digits(return_X_y=True)
X = X[:300] / 16
warnings.simplefilter("ignore", ConvergenceWarning)
for backend in sys.argv[1:]:
    est = fastmlp.MLPClassifier((12,), max_iter=3, random_state=0, backend=backend).fit(X, y[:300])
    proba, classes = est.predict_proba(X), est.classes_.copy()
    est.set_params(hidden_layer_sizes=(100_000, 100_000))  # 10^10 weights: 80 GB
    try:
        est.fit(X, (y[:300] + 3) % 12)
        print(backend, "no MemoryError")
    except MemoryError:
        same = np.array_equal(est.predict_proba(X), proba) and np.array_equal(est.classes_,
                                                                              classes)
        print(backend, "kept" if same and est.n_iter_ == 3 else "changed", flush=True)
"""


@pytest.mark.process
def test_a_refit_that_runs_out_of_memory_keeps_the_previous_model():
    """Every backend, in one child with an address-space limit."""
    done = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY, *BACKENDS], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"{backend} kept" for backend in BACKENDS]


def test_a_regressors_failed_refit_keeps_its_model():
    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=5,
                           random_state=0).fit(X, y / 9.0)
    before = est.predict(X)
    coefs = [c.copy() for c in est.coefs_]
    with pytest.raises(ValueError):
        est.fit(X[:, :10], np.full(400, np.inf))
    np.testing.assert_array_equal(est.predict(X), before)
    for a, b in zip(est.coefs_, coefs):
        np.testing.assert_array_equal(a, b)


def test_zero_weights_skip_their_minibatches_and_all_zero_is_a_clear_error(backend):
    X, y = _digits()
    w = np.ones(len(X))
    w[:40] = 0  # the first minibatch of 40 (shuffle off); scikit-learn divides 0 by 0 here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier((12,), batch_size=40, shuffle=False, max_iter=3, random_state=0,
                            backend=backend).fit(X, y, sample_weight=w)
    assert all(np.all(np.isfinite(c)) for c in est.coefs_) and est.n_iter_ == 3
    zeros = np.zeros(len(X))
    with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero"):
        MLPClassifier(backend=backend).fit(X, y, sample_weight=zeros)  # scikit-learn's check
    with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero"):
        MLPRegressor(solver="lbfgs", backend=backend).fit(X, y, sample_weight=zeros)
    nothing = {label: 0.0 for label in range(10)}
    with pytest.raises(ValueError, match="sample_weight sums to zero or less .after class_weight"):
        MLPClassifier(class_weight=nothing, backend=backend).fit(X, y)
