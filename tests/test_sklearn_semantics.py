"""What scikit-learn's own MLP tests check, in fastmlp's terms, beside scikit-learn itself.

tests/test_sklearn_suite.py runs scikit-learn's file as it is; the tests here cover what it
reads through scikit-learn's private attributes (the deselected tests), and the behaviours
it found different, more strictly: every backend, compared with scikit-learn's estimator.
"""
import pickle
import threading
import warnings

import numpy as np
import pytest
from sklearn import datasets
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.utils._param_validation import InvalidParameterError

from helpers import COMPILED

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor



def _iris():
    X, y = datasets.load_iris(return_X_y=True)
    return X, y


# -- the tests left out of scikit-learn's file -------------------------------------------
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("n_labels", [2, 3])
def test_gradient_matches_finite_differences(backend, activation, n_labels):
    """scikit-learn's test_gradient, through the fitted network's loss_and_gradient."""
    rng = np.random.RandomState(42)
    X = rng.rand(5, 10)
    y = 1 + np.mod(np.arange(5) + 1, n_labels)
    est = MLPClassifier(activation=activation, hidden_layer_sizes=10, solver="lbfgs",
                        alpha=1e-5, max_iter=1, random_state=1, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    net = est._net
    Y = est._label_binarizer.transform(y).astype(float)

    def loss(theta):
        net.theta[...] = theta
        return net.loss_and_gradient(X, Y, None, np.empty_like(theta))

    theta = net.theta.copy()
    grad = np.empty_like(theta)
    net.loss_and_gradient(X, Y, None, grad)
    eps = 1e-5
    numeric = np.array([(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps)
                        for e in np.eye(theta.size)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("schedule", ["invscaling", "constant"])
def test_invscaling_rate_continues_across_warm_starts(backend, schedule):
    """scikit-learn's test_learning_rate_warmstart: a warm start keeps the schedule's
    place, so the second 1-epoch fit steps at init / (8 + 1) ** power_t; the weights follow
    scikit-learn's step for step."""
    X, y = [[3, 2], [1, 6], [5, 6], [-2, -4]], [1, 1, 1, 0]
    params = dict(solver="sgd", hidden_layer_sizes=4, learning_rate=schedule, max_iter=1,
                  power_t=0.25, warm_start=True, random_state=0)
    ours, theirs = MLPClassifier(backend=backend, **params), SkClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(2):
            ours.fit(X, y)
            theirs.fit(X, y)
    expected = 0.001 / (8 + 1) ** 0.25 if schedule == "invscaling" else 0.001
    assert ours._schedule.value == pytest.approx(expected, rel=1e-12)
    assert theirs._optimizer.learning_rate == pytest.approx(expected, rel=1e-12)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_adaptive_rate_falls_below_its_floor_before_stopping(backend):
    """scikit-learn's test_adaptive_learning_rate: 'adaptive' divides the rate by 5 on each
    plateau and stops once it is below 1e-6 — at scikit-learn's epoch."""
    X, y = [[3, 2], [1, 6]], [1, 0]
    params = dict(tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive",
                  random_state=0)
    ours = MLPClassifier(backend=backend, **params).fit(X, y)
    theirs = SkClassifier(**params).fit(X, y)
    assert ours.n_iter_ < 3000 and ours._schedule.value < 1e-6
    assert ours.n_iter_ == theirs.n_iter_
    assert ours._schedule.value == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)


# -- the public attributes are the model ---------------------------------------------------
def _fitted_pair(backend, Estimator=MLPClassifier, Sk=SkClassifier, **params):
    X, y = _iris()
    if Estimator is MLPRegressor:
        y = X[:, 0] + X[:, 1]
    params = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0, solver="sgd",
                  **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return (Estimator(backend=backend, **params).fit(X, y), Sk(**params).fit(X, y), X, y)


def _new_weights(est, seed):
    rng = np.random.RandomState(seed)
    return ([rng.normal(size=W.shape) for W in est.coefs_],
            [rng.normal(size=b.shape) for b in est.intercepts_])


@pytest.mark.parametrize("how", ["attributes", "items"])
def test_assigned_weights_are_what_predict_uses(backend, how):
    ours, theirs, X, _ = _fitted_pair(backend)
    coefs, intercepts = _new_weights(ours, 1)
    for est in (ours, theirs):
        if how == "attributes":
            est.coefs_, est.intercepts_ = [c.copy() for c in coefs], [b.copy() for b in intercepts]
        else:
            for l in range(len(coefs)):
                est.coefs_[l], est.intercepts_[l] = coefs[l].copy(), intercepts[l].copy()
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    # the attributes are the network's again, and in-place changes reach it too
    assert np.shares_memory(ours.coefs_[0], ours._net.theta)
    ours.coefs_[0][...] = 0
    theirs.coefs_[0][...] = 0
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-12)


@pytest.mark.parametrize("Estimator,Sk", [(MLPClassifier, SkClassifier),
                                          (MLPRegressor, SkRegressor)])
@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_training_continues_from_assigned_weights(backend, Estimator, Sk, how):
    ours, theirs, X, y = _fitted_pair(backend, Estimator, Sk, warm_start=how == "warm_start")
    coefs, intercepts = _new_weights(ours, 2)
    scale = 0.1  # small weights: a few steps stay on scikit-learn's trajectory to 1e-8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ours, theirs):
            est.coefs_ = [scale * c for c in coefs]
            est.intercepts_ = [scale * b for b in intercepts]
            est.partial_fit(X, y) if how == "partial_fit" else est.fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_a_fresh_fit_draws_new_weights_whatever_was_assigned(backend):
    ours, _, X, y = _fitted_pair(backend)
    first = [W.copy() for W in ours.coefs_]
    ours.coefs_ = [np.zeros((9, 9))]  # would not fit, but a fresh fit ignores it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
    for a, b in zip(ours.coefs_, first):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad,message", [
    (lambda c, b: ([c[0][:, :2], c[1]], b), r"coefs_\[0\] has shape \(4, 2\), this network "
                                            r"needs \(4, 5\)"),
    (lambda c, b: (c[:1], b), "coefs_ needs a list of 2 arrays"),
    (lambda c, b: (c, [b[0], b[1].astype(complex)]), r"intercepts_\[1\] has dtype complex"),
    (lambda c, b: ([c[0], np.full_like(c[1], np.nan)], b), r"coefs_\[1\] contains NaN"),
    (lambda c, b: (c, [b[0].astype(str), b[1]]), r"intercepts_\[0\] has dtype <U"),
])
def test_assigned_weights_that_do_not_fit_are_a_clear_error(backend, bad, message):
    ours, _, X, y = _fitted_pair(backend)
    before = ours.predict_proba(X)
    theta = ours._net.theta.copy()
    ours.coefs_, ours.intercepts_ = bad([c.copy() for c in ours.coefs_],
                                        [b.copy() for b in ours.intercepts_])
    for call in (lambda: ours.predict(X), lambda: ours.partial_fit(X, y)):
        with pytest.raises(ValueError, match=message):
            call()
    np.testing.assert_array_equal(ours._net.theta, theta)  # nothing half-copied
    ours.coefs_, ours.intercepts_ = ours._views[:2]
    np.testing.assert_array_equal(ours.predict_proba(X), before)


def test_assigned_weights_survive_pickle_save_and_clone(backend, tmp_path):
    ours, _, X, _ = _fitted_pair(backend)
    coefs, intercepts = _new_weights(ours, 3)
    ours.coefs_, ours.intercepts_ = coefs, intercepts
    expected = ours.predict_proba(X)
    ours.coefs_, ours.intercepts_ = coefs, intercepts  # assigned again, then pickled at once
    again = pickle.loads(pickle.dumps(ours))
    np.testing.assert_array_equal(again.predict_proba(X), expected)
    ours.coefs_ = [c.copy() for c in coefs]
    fastmlp.save(ours, tmp_path / "m.fastmlp")
    np.testing.assert_array_equal(fastmlp.load(tmp_path / "m.fastmlp").predict_proba(X),
                                  expected)
    assert clone(ours).get_params() == ours.get_params()


def test_an_unfitted_estimator_given_weights_predicts_and_trains_with_them(backend):
    X, y = _iris()
    ours, theirs, _, _ = _fitted_pair(backend)
    coefs, intercepts = _new_weights(ours, 4)
    fresh = MLPClassifier(hidden_layer_sizes=(5,), solver="sgd", backend=backend)
    fresh.coefs_, fresh.intercepts_ = coefs, intercepts
    fresh.classes_ = np.array([0, 1, 2])
    theirs.coefs_, theirs.intercepts_ = coefs, intercepts
    np.testing.assert_allclose(fresh.predict_proba(X), theirs.predict_proba(X), rtol=1e-12)
    assert fresh.n_features_in_ == 4 and fresh.out_activation_ == "softmax"
    fresh.partial_fit(X, y)  # trains on from them
    assert fresh.n_iter_ == 1 and fresh.t_ == len(y)

    blank = MLPClassifier(backend=backend)
    blank.coefs_, blank.intercepts_ = coefs, intercepts
    with pytest.raises(ValueError, match="needs its classes"):
        blank.predict(X)


# -- n_iter_, n_iter_no_change, partial_fit, verbose, divergence ---------------------------
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_n_iter_counts_the_epochs_of_each_call_as_scikit_learn(backend, solver):
    X, y = _iris()
    params = dict(solver=solver, warm_start=True, max_iter=4, random_state=0,
                  n_iter_no_change=np.inf)
    ours, theirs = MLPClassifier(backend=backend, **params), SkClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for max_iter in (4, 7):
            for est in (ours, theirs):
                est.set_params(max_iter=max_iter).fit(X, y)
            assert ours.n_iter_ == theirs.n_iter_ == max_iter
            if solver != "lbfgs":
                assert ours.t_ == theirs.t_ and len(ours.loss_curve_) == len(theirs.loss_curve_)
        if solver != "lbfgs":
            for est in (ours, theirs):
                est.partial_fit(X, y)
            assert ours.n_iter_ == theirs.n_iter_ == 1 and ours.t_ == theirs.t_


def test_n_iter_no_change_inf_never_stops_and_counts(backend):
    X, y = _iris()
    params = dict(solver="sgd", tol=1e9, max_iter=60, n_iter_no_change=np.inf, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(backend=backend, **params).fit(X, y)
    assert ours.n_iter_ == 60 and ours._no_improvement_count == 59
    with pytest.raises(ValueError, match="n_iter_no_change"):
        MLPClassifier(n_iter_no_change=-np.inf).fit(X, y)


def test_partial_fit_is_absent_for_lbfgs():
    for Estimator in (MLPClassifier, MLPRegressor):
        assert not hasattr(Estimator(solver="lbfgs"), "partial_fit")
        assert hasattr(Estimator(solver="sgd"), "partial_fit")
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
            Estimator(solver="lbfgs").partial_fit


def test_multilabel_partial_fit_follows_scikit_learn(backend):
    X, Y = datasets.make_multilabel_classification(n_samples=50, random_state=0)
    params = dict(solver="sgd", hidden_layer_sizes=8, random_state=0, activation="logistic",
                  learning_rate_init=0.2)
    ours, theirs = MLPClassifier(backend=backend, **params), SkClassifier(**params)
    for _ in range(5):
        for est in (ours, theirs):
            est.partial_fit(X, Y, classes=[0, 1, 2, 3, 4])
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_verbose_prints_scikit_learns_lines_to_stdout(backend, capsys):
    X, y = _iris()
    ours = MLPClassifier(solver="sgd", max_iter=3, verbose=True, random_state=0,
                         backend=backend)
    theirs = SkClassifier(solver="sgd", max_iter=3, verbose=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        out, err = capsys.readouterr()
        theirs.fit(X, y)
        sk_out, _ = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("Iteration")]
    assert [line.split(",")[0] for line in lines] == [f"Iteration {i}" for i in (1, 2, 3)]
    for line, sk_line in zip(lines, sk_out.splitlines()):
        assert float(line.split("= ")[1]) == pytest.approx(float(sk_line.split("= ")[1]),
                                                          rel=1e-7)
    assert "Iteration" not in err  # the bar (stderr) only shows the loss


def test_early_stopping_survives_a_divergence_with_the_best_weights(backend):
    X, y = _iris()
    est = MLPRegressor(hidden_layer_sizes=100, activation="identity", solver="sgd",
                       learning_rate_init=1, max_iter=20, early_stopping=True,
                       random_state=0, backend=backend)
    with pytest.warns(ConvergenceWarning, match="diverged at epoch"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            est.fit(X, y)
    scores = est.validation_scores_
    assert np.isnan(scores[-1]) and isinstance(scores[-1], float)
    assert len(scores) == est.n_iter_ == len(est.loss_curve_)
    assert np.all(np.isfinite(est._net.theta))
    best = est._best_theta
    np.testing.assert_array_equal(est._net.theta, best)
    assert np.all(np.isfinite(est.predict(X)))


# -- settings --------------------------------------------------------------------------------
def test_config_context_sets_the_backend_auto_means_in_this_thread_only():
    default = fastmlp.get_config()["backend"]
    X, y = _iris()
    seen = {}
    with fastmlp.config_context(backend="numpy"):
        assert fastmlp.get_config()["backend"] == "numpy"
        assert MLPClassifier(max_iter=2).fit(X, y).backend_ == "numpy"
        assert MLPClassifier(max_iter=2, backend=COMPILED[0]).fit(X, y).backend_ == COMPILED[0]
        thread = threading.Thread(target=lambda: seen.update(fastmlp.get_config()))
        thread.start()
        thread.join()
    assert seen["backend"] == default and fastmlp.get_config()["backend"] == default
    with pytest.raises(ValueError, match="'gpu' is not a backend"):
        fastmlp.set_config(backend="gpu")


def test_the_progress_bar_is_a_setting_apart_from_verbose(capsys):
    """progress_bar: None shows the bar with verbose (as before); True shows it without the
    verbose lines, False shows the lines without it."""
    X, y = _iris()
    for setting, verbose, bar, lines in [(None, True, True, True), (None, False, False, False),
                                         (True, False, True, False),
                                         (False, True, False, True)]:
        with fastmlp.config_context(progress_bar=setting):
            MLPClassifier(max_iter=3, verbose=verbose, random_state=0).fit(X, y)
        captured = capsys.readouterr()
        assert ("epoch" in captured.err) == bar, (setting, verbose, captured.err)
        assert ("Iteration 3" in captured.out) == lines, (setting, verbose, captured.out)
    assert fastmlp.get_config()["progress_bar"] is None
    with pytest.raises(ValueError, match="progress_bar must be None, True or False"):
        fastmlp.set_config(progress_bar="yes")


@pytest.mark.process
@pytest.mark.parametrize("value,expected", [("numpy", "numpy"), ("bogus", "error")])
def test_fastmlp_backend_environment_variable(value, expected):
    import subprocess
    import sys

    code = "import fastmlp; print(fastmlp.MLPRegressor(max_iter=2).fit([[0], [1]], [0, 1]).backend_)"
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, env={**__import__("os").environ, "FASTMLP_BACKEND": value})
    if expected == "error":
        assert out.returncode == 1
        assert "FASTMLP_BACKEND='bogus' is not a backend" in out.stderr
    else:
        assert out.returncode == 0 and out.stdout.strip() == expected


# -- Poisson ------------------------------------------------------------------------------------
def _counts(seed=0, n=120, n_targets=1):
    rng = np.random.RandomState(seed)
    X = rng.uniform(0, 1, (n, 3))
    rate = np.exp(X @ rng.uniform(-1, 1, (3, n_targets)) + 0.5)
    y = rng.poisson(rate).astype(float)
    return X, (y.ravel() if n_targets == 1 else y)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("n_targets", [1, 2])
def test_poisson_follows_scikit_learns_trajectory(backend, solver, n_targets):
    if "loss" not in SkRegressor().get_params():
        pytest.skip("scikit-learn < 1.7 has no Poisson MLP to follow")
    X, y = _counts(n_targets=n_targets)
    params = dict(loss="poisson", hidden_layer_sizes=(6,), solver=solver, max_iter=15,
                  random_state=0, learning_rate_init=0.01, batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(backend=backend, **params).fit(X, y)
        theirs = SkRegressor(**params).fit(X, y)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    if solver != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8)
    assert np.all(ours.predict(X) > 0)


def test_poisson_in_float32_trains_in_float32(backend):
    X, y = _counts()
    est = MLPRegressor(loss="poisson", hidden_layer_sizes=(6,), max_iter=20, random_state=0,
                       backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X.astype(np.float32), y.astype(np.float32))
        ref = MLPRegressor(**{**est.get_params(), "backend": "numpy"}).fit(
            X.astype(np.float32), y.astype(np.float32))
    assert est.coefs_[0].dtype == np.float32 and est.predict(X).dtype == np.float32
    np.testing.assert_allclose(est.predict(X), ref.predict(X), rtol=1e-4)


def test_poisson_rejects_negative_targets_with_scikit_learns_message():
    X, y = _counts()
    y[3] = -1
    with pytest.raises(ValueError, match="Some value\\(s\\) of y are out of the valid range "
                                         "of the loss 'HalfPoissonLoss'"):
        MLPRegressor(loss="poisson").fit(X, y)
    with pytest.raises(InvalidParameterError, match="The 'loss' parameter of MLPRegressor "
                                                    "must be a str among .*Got 'gamma'"):
        MLPRegressor(loss="gamma").fit(X, np.abs(y))


def test_poisson_model_saves_pickles_and_warm_starts(backend, tmp_path):
    X, y = _counts()
    est = MLPRegressor(loss="poisson", hidden_layer_sizes=(6,), max_iter=5, random_state=0,
                       backend=backend, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
        fastmlp.save(est, tmp_path / "p.fastmlp")
        loaded, copied = fastmlp.load(tmp_path / "p.fastmlp"), pickle.loads(pickle.dumps(est))
        for other in (loaded, copied):
            np.testing.assert_array_equal(other.predict(X), est.predict(X))
        est.fit(X, y)
        copied.fit(X, y)
    np.testing.assert_array_equal(copied.predict(X), est.predict(X))



WARNING_CASES = {  # how an MLP class gives the warning, and its category
    "sgd's last epoch": (lambda MLP, X, y: MLP(max_iter=1, random_state=0).fit(X, y),
                         ConvergenceWarning),
    "lbfgs's last iteration": (lambda MLP, X, y: MLP(solver="lbfgs", max_iter=1,
                                                     random_state=0).fit(X, y),
                               ConvergenceWarning),
    "a batch_size clipped": (lambda MLP, X, y: MLP(batch_size=10_000, max_iter=300,
                                                   random_state=0).fit(X, y), UserWarning),
    "feature names lost": (lambda MLP, X, y: _fitted_on_a_frame(MLP, X, y).predict(X),
                           UserWarning),
}


def _fitted_on_a_frame(MLP, X, y):
    pd = pytest.importorskip("pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLP(max_iter=5, random_state=0).fit(pd.DataFrame(X, columns=list("abcd")), y)


def _warns(give, MLP, category, module):
    """Whether give(MLP, ...) warns under filterwarnings("ignore", category, module=module)."""
    X, y = _iris()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=category, module=module)
        give(MLP, X, y)
    return any(issubclass(w.category, category) for w in caught)


@pytest.mark.parametrize("case", WARNING_CASES)
@pytest.mark.parametrize("module", ["sklearn", r"sklearn\.neural_network", "sklearn.utils",
                                    "numpy"])
def test_module_filters_silence_what_they_silence_in_scikit_learn(case, module):
    """scikit-learn's examples silence the MLP with filterwarnings("ignore",
    category=ConvergenceWarning, module="sklearn"): a filter naming a module silences
    fastmlp's warning exactly where it silences scikit-learn's."""
    give, category = WARNING_CASES[case]
    assert _warns(give, SkClassifier, category, "numpy")  # the case gives its warning
    assert _warns(give, MLPClassifier, category, module) == _warns(give, SkClassifier,
                                                                   category, module)


@pytest.mark.parametrize("case", WARNING_CASES)
def test_module_filters_name_fastmlp_and_the_first_filter_decides(case):
    give, category = WARNING_CASES[case]
    assert not _warns(give, MLPClassifier, category, "fastmlp")
    assert _warns(give, MLPClassifier, category, "fastmlp.io")  # another of its modules
    X, y = _iris()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("ignore", category=category, module="sklearn")
        warnings.filterwarnings("error", category=category)  # in front: it decides
        with pytest.raises(category):
            give(MLPClassifier, X, y)


#: A bad value of each of scikit-learn's parameters.
BAD_VALUES = {"hidden_layer_sizes": "100", "activation": "gelu", "solver": "newton",
              "alpha": -1.0, "batch_size": 0, "learning_rate": "cosine",
              "learning_rate_init": 0.0, "power_t": -1.0, "max_iter": 0, "shuffle": "yes",
              "random_state": "seed", "tol": -1.0, "verbose": "loud", "warm_start": 1.5,
              "momentum": 2.0, "nesterovs_momentum": None, "early_stopping": "no",
              "validation_fraction": 1.0, "beta_1": 1.0, "beta_2": -0.1, "epsilon": 0.0,
              "n_iter_no_change": 0, "max_fun": 0, "loss": "gamma"}


@pytest.mark.parametrize("Ours,Theirs", [(MLPClassifier, SkClassifier),
                                         (MLPRegressor, SkRegressor)])
def test_every_bad_parameter_is_scikit_learns_error(Ours, Theirs):
    """hidden_layer_sizes="100" and every other bad value: scikit-learn's
    InvalidParameterError with its message, before anything is fitted."""
    X, y = _iris()
    names = set(Theirs._parameter_constraints)
    assert names <= set(BAD_VALUES), f"no bad value for {names - set(BAD_VALUES)}"
    for name in sorted(names):
        with pytest.raises(InvalidParameterError) as theirs:
            Theirs(**{name: BAD_VALUES[name]}).fit(X, y)
        with pytest.raises(InvalidParameterError) as ours:
            Ours(**{name: BAD_VALUES[name]}).fit(X, y)
        if name in ("activation", "solver"):  # fastmlp's have leaky_relu, adamw among them
            assert f"Got {BAD_VALUES[name]!r} instead" in str(ours.value)
        else:
            assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("name,value", [("leaky_slope", 0.0), ("backend", "fortran"),
                                        ("n_threads", 0), ("class_weight", "even"),
                                        ("weight_decay", -0.1)])
def test_fastmlps_own_parameters_are_validated_as_scikit_learns(name, value):
    X, y = _iris()
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of MLPClassifier "
                                                    f"must be .* Got '?{value}'? instead"):
        MLPClassifier(**{name: value}).fit(X, y)


def test_early_stopping_says_at_fit_when_its_weights_overflow_on_the_training_data(backend):
    """Unscaled data and a Poisson (exp) output: the weights with the best validation score
    overflow on training rows. The fit says so (a ConvergenceWarning) instead of leaving it to
    the first predict's OverflowError; scaled data gives no such warning."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 3)) * 769.0
    y = rng.poisson(np.exp(np.clip(X[:, 0] / 769.0, -2, 2))).astype(float)
    est = MLPRegressor(loss="poisson", early_stopping=True, hidden_layer_sizes=(8,),
                       max_iter=50, random_state=4, backend=backend)
    with pytest.warns(ConvergenceWarning, match="early stopping kept .* do not predict the "
                                                "training data: layer 1 .exp. overflowed"):
        est.fit(X, y)
    with pytest.raises(OverflowError):
        est.predict(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X / 769.0, y)
    assert not [w for w in caught if "early stopping kept" in str(w.message)]


PARTIAL_FIT_RUNS = {  # estimator pair, parameters, targets from X
    "multiclass": (MLPClassifier, SkClassifier, {}, lambda X: (X[:, 0] * 3).astype(int) % 4),
    "binary strings": (MLPClassifier, SkClassifier, {},
                       lambda X: np.where(X[:, 1] > 0.5, "yes", "no")),
    "binary, RandomState": (MLPClassifier, SkClassifier, {"random_state": "instance"},
                            lambda X: (X[:, 2] > 0.5).astype(int)),
    "unshuffled sgd": (MLPClassifier, SkClassifier, {"shuffle": False, "solver": "sgd"},
                       lambda X: (X[:, 0] * 3).astype(int)),
    "regressor": (MLPRegressor, SkRegressor, {}, lambda X: X[:, 0] - X[:, 1]),
    "two outputs": (MLPRegressor, SkRegressor, {}, lambda X: X[:, :2] * 2),
    "poisson": (MLPRegressor, SkRegressor, {"loss": "poisson"},
                lambda X: np.floor(X[:, 0] * 4)),
}


@pytest.mark.filterwarnings("ignore:Got `batch_size` less than 1 or larger than sample size")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("run", PARTIAL_FIT_RUNS)
def test_a_run_of_partial_fits_is_scikit_learns(backend, run, dtype):
    """Calls of 1, 2, 5 and 32 rows — ready arrays, which skip validate_data, and lists and
    a Fortran array, which do not — one after another: scikit-learn's weights after each."""
    Ours, Theirs, params, target = PARTIAL_FIT_RUNS[run]
    if "loss" in params and "loss" not in Theirs().get_params():
        pytest.skip("scikit-learn < 1.7 has no Poisson MLP to follow")
    rng = np.random.default_rng(0)
    X = rng.random((200, 6)).astype(dtype)
    y = target(X)
    params = dict(dict(hidden_layer_sizes=(7,), random_state=3, learning_rate_init=0.01,
                       batch_size=4),  # minibatches within a call: its order counts
                  **params)
    if params["random_state"] == "instance":
        ours = Ours(backend=backend, **dict(params, random_state=np.random.RandomState(5)))
        theirs = Theirs(**dict(params, random_state=np.random.RandomState(5)))
    else:
        ours, theirs = Ours(backend=backend, **params), Theirs(**params)
    extra = {"classes": np.unique(y)} if Ours is MLPClassifier else {}
    start = 0
    for size, form in [(32, "ready"), (1, "ready"), (2, "ready"), (5, "list"), (32, "ready"),
                       (1, "ready"), (32, "fortran"), (5, "ready")]:
        Xb, yb = X[start:start + size], y[start:start + size]
        start += size
        Xb = {"ready": Xb, "list": Xb.tolist(), "fortran": np.asfortranarray(Xb)}[form]
        ours.partial_fit(Xb, yb, **extra)
        theirs.partial_fit(Xb, yb, **extra)
        tolerance = 1e-12 if dtype == np.float64 else 1e-5
        for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)
        assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
