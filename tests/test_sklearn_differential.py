"""Differential tests: fastmlp against scikit-learn's MLP over generated data, scales and
hyperparameters (hypothesis, seeded), the same model wherever scikit-learn defines one.

Two properties. The first step — one full-batch epoch from the same seeded weights — costs
the same loss and leaves the same weights, in every backend and dtype, whatever the data's
scale (unscaled data saturates the outputs: the log losses must clip as scikit-learn's do).
A few epochs of any solver, schedule and stopping rule then follow scikit-learn's trajectory
in the reference backend: the same losses, the same decisions (n_iter_), the same model.

Longer runs are left out on purpose: two correct implementations start 1 ulp apart (another
summation order), and an unscaled problem with momentum, or L-BFGS on an ill-conditioned one,
multiplies that by up to 10⁵ an epoch — a difference of the dynamics, not of the maths
(docs/estimators.md, "What differs from scikit-learn").
"""
import inspect
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor

from helpers import BACKENDS

import fastmlp

#: What the installed scikit-learn can be compared on: its MLP has a Poisson loss and takes
#: sample weights from 1.7 on (the lowest supported version, 1.6.1, has neither).
SKLEARN_POISSON = "loss" in SkRegressor().get_params()
SKLEARN_WEIGHTS = "sample_weight" in inspect.signature(SkClassifier.fit).parameters
TASKS = ("binary", "multiclass", "multilabel", "squared_error") + (
    ("poisson",) if SKLEARN_POISSON else ())
ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
#: The first step's agreement by dtype: one epoch, so only the summation order differs.
FIRST_STEP_RTOL = {np.float64: 1e-9, np.float32: 2e-4}
#: A few epochs in float64: the roundings of every step, compounded.
TRAJECTORY_RTOL = 1e-7


@st.composite
def problems(draw, scales=(-2.0, 3.0)):
    """(task, X, y, estimator parameters): data at a scale from 10^-2 to 10^3 (10^1 for
    Poisson, whose exp output overflows beyond), a network of one or two hidden layers."""
    task = draw(st.sampled_from(TASKS))
    n = draw(st.integers(2, 60))
    d = draw(st.integers(1, 6))
    top = min(scales[1], 1.0) if task == "poisson" else scales[1]
    # the ends and the middle of the range as often as the values between them
    ends = st.sampled_from([scales[0], 0.0, top])
    scale = 10 ** draw(st.one_of(ends, st.floats(scales[0], top)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.normal(size=(n, d)) * scale
    if task == "binary":
        y = rng.integers(0, 2, n)
    elif task == "multiclass":
        y = rng.integers(0, draw(st.integers(3, 5)), n)
    elif task == "multilabel":
        y = rng.integers(0, 2, (n, draw(st.integers(2, 4))))
    elif task == "squared_error":
        y = X @ rng.normal(size=d) + rng.normal(size=n)
    else:
        y = rng.poisson(np.exp(np.clip(X[:, 0] / scale, -2, 2))).astype(float)
    if task in ("binary", "multiclass"):
        y[:2] = [0, 1]  # two classes at least
    params = dict(
        hidden_layer_sizes=tuple(draw(st.lists(st.integers(1, 8), min_size=1, max_size=2))),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        alpha=10 ** draw(st.floats(-6, 0)),
        random_state=draw(st.integers(0, 1000)))
    return task, X, y, params


def _pair(task, params, backend):
    """scikit-learn's estimator and fastmlp's, with the same parameters."""
    if task in ("squared_error", "poisson"):
        params = dict(params, loss=task) if task == "poisson" else params
        return SkRegressor(**params), fastmlp.MLPRegressor(backend=backend, **params)
    return SkClassifier(**params), fastmlp.MLPClassifier(backend=backend, **params)


def _fit(model, X, y, sample_weight=None):
    weighted = {} if sample_weight is None else {"sample_weight": sample_weight}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning; overflow in scikit-learn's exp
        return model.fit(X, y, **weighted)


def _diverged(sk, X, y, sample_weight=None):
    """Fit scikit-learn's model; True when it refused non-finite weights (fastmlp then raises
    its DivergenceError, a ValueError with the same message)."""
    try:
        _fit(sk, X, y, sample_weight)
    except ValueError as error:
        assert "non-finite parameter weights" in str(error)
        return True
    return False


def _overflows(sk, X):
    """Whether scikit-learn's network, applied to X, carries an inf or NaN to its output (it
    then predicts from it; fastmlp's predict raises OverflowError instead, documented)."""
    A = X
    with np.errstate(all="ignore"):
        for W, b in zip(sk.coefs_[:-1], sk.intercepts_[:-1]):
            A = A @ W + b
            A = {"identity": A, "logistic": 1 / (1 + np.exp(-A)), "tanh": np.tanh(A),
                 "relu": np.maximum(A, 0)}[sk.activation]
        A = A @ sk.coefs_[-1] + sk.intercepts_[-1]
        if sk.out_activation_ == "exp":
            A = np.exp(A)
    return not np.isfinite(A).all()


def _predict(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow in scikit-learn's exp
        return model.predict(X)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(), solver=st.sampled_from(["sgd", "adam"]))
def test_the_first_step_is_scikit_learns(backend, dtype, problem, solver):
    """One full-batch epoch from the same seeded weights: the same loss (the loss of the
    initial weights, saturated outputs included) and the same weights after the step."""
    task, X, y, params = problem
    params = dict(params, solver=solver, batch_size=X.shape[0], max_iter=1, shuffle=False,
                  learning_rate_init=1e-3)
    X = X.astype(dtype)
    sk, ours = _pair(task, params, backend)
    if _diverged(sk, X, y) or not np.isfinite(sk.loss_curve_[0]):  # fastmlp refuses (documented)
        with pytest.raises(fastmlp.DivergenceError):
            _fit(ours, X, y)
        return
    _fit(ours, X, y)
    rtol = FIRST_STEP_RTOL[dtype]
    assert ours.loss_curve_[0] == pytest.approx(sk.loss_curve_[0], rel=rtol)
    for mine, theirs in zip(ours.coefs_ + ours.intercepts_, sk.coefs_ + sk.intercepts_):
        assert mine.dtype == theirs.dtype
        np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(), data=st.data())
def test_a_few_epochs_follow_scikit_learn(problem, data):
    """Two to six epochs of any solver, schedule, stopping rule (n_iter_no_change of one to
    three, so the rules decide within them) and sample weights, negative ones too: the same
    loss curve, the same number of epochs, the same validation scores and the same
    predictions (reference backend)."""
    task, X, y, params = problem
    solver = data.draw(st.sampled_from(["sgd", "adam", "lbfgs"]))
    params = dict(
        params, solver=solver, max_iter=data.draw(st.integers(2, 6)),
        batch_size=data.draw(st.sampled_from([1, 7, 32, 200])),
        learning_rate=data.draw(st.sampled_from(["constant", "adaptive", "invscaling"])),
        learning_rate_init=10 ** data.draw(st.floats(-4, -1)),
        momentum=data.draw(st.floats(0.0, 0.95)), nesterovs_momentum=data.draw(st.booleans()),
        n_iter_no_change=data.draw(st.integers(1, 3)), tol=10 ** data.draw(st.floats(-6, -1)),
        early_stopping=X.shape[0] >= 30 and task != "multilabel" and data.draw(st.booleans()))
    weights = data.draw(st.sampled_from([None, "positive", "some negative"]
                                        if SKLEARN_WEIGHTS else [None]))
    if weights is not None:  # negative weights count against their samples, as in sklearn
        w = np.random.default_rng(X.shape[0]).normal(1.0, 1.0 if weights != "positive" else 0,
                                                     X.shape[0])
        weights = np.abs(w) if weights == "positive" else w
    sk, ours = _pair(task, params, "numpy")
    if weights is not None and not weights.sum() > 0:  # no minimum to fit: refused
        with pytest.raises(ValueError, match="sample_weight sums to zero or less"):
            _fit(ours, X, y, weights)
        return
    diverged = _diverged(sk, X, y, weights)
    finite = not diverged and np.isfinite(sk.loss_ if solver == "lbfgs" else sk.loss_curve_).all()
    stops_early = params["early_stopping"] and solver != "lbfgs"
    if not finite and task == "poisson":
        # an exp output that underflows to 0 costs scikit-learn an inf or NaN loss and fastmlp
        # a finite one; one that overflows is a divergence for fastmlp (both documented)
        try:
            _fit(ours, X, y, weights)
        except fastmlp.DivergenceError:
            return
        curve = ours.loss_curve_[:-1] if stops_early else ours.loss_curve_
        assert np.isfinite(curve).all()
        return
    if not finite and stops_early:
        # no error in either; fastmlp stops at the epoch that diverged, recorded as NaN
        _fit(ours, X, y, weights)
        k = len(ours.loss_curve_) - 1
        assert np.isnan(ours.loss_curve_[k]) and not np.isfinite(sk.loss_curve_[k])
        np.testing.assert_allclose(ours.loss_curve_[:k], sk.loss_curve_[:k], rtol=1e-7)
        return
    if not finite:  # scikit-learn goes on with an inf loss or refuses; fastmlp stops (documented)
        with pytest.raises(fastmlp.DivergenceError):
            _fit(ours, X, y, weights)
        return
    _fit(ours, X, y, weights)
    rtol = TRAJECTORY_RTOL
    assert ours.n_iter_ == sk.n_iter_
    assert ours.loss_ == pytest.approx(sk.loss_, rel=rtol)
    if solver != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, sk.loss_curve_, rtol=rtol)
    if stops_early:
        np.testing.assert_allclose(ours.validation_scores_, sk.validation_scores_,
                                   rtol=rtol, atol=1e-9)
    if _overflows(sk, X):
        with pytest.raises(OverflowError):
            ours.predict(X)
    elif task in ("squared_error", "poisson"):
        scale = 1 + np.abs(_predict(sk, X)).max()
        np.testing.assert_allclose(ours.predict(X), _predict(sk, X), rtol=rtol * 10,
                                   atol=rtol * 10 * scale)
    else:
        np.testing.assert_array_equal(ours.predict(X), _predict(sk, X))
