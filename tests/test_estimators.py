"""MLPClassifier / MLPRegressor: scikit-learn's contract, trajectory and accuracy."""
import itertools
import pickle
import warnings

import numpy as np
import pytest
from sklearn import datasets
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from helpers import BACKENDS

from fastmlp import MLPClassifier, MLPRegressor



def _checked_estimators():
    for backend in BACKENDS:
        yield MLPClassifier(backend=backend, max_iter=300, random_state=0)
        yield MLPRegressor(backend=backend, max_iter=300, random_state=0)


@parametrize_with_checks(list(_checked_estimators()))
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _same_start(ours, theirs, X, y):
    """Fit both for a few epochs from scikit-learn's own starting weights (same random_state)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs.fit(X, y)


TRAJECTORIES = [
    dict(solver="sgd", momentum=0.0, learning_rate_init=0.1),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=False, learning_rate_init=0.05),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, learning_rate_init=0.05,
         learning_rate="invscaling"),
    dict(solver="adam", learning_rate_init=0.01),
    dict(solver="adam", learning_rate_init=0.01, alpha=0.1, batch_size=16),
]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("params", TRAJECTORIES,
                         ids=["sgd", "momentum", "nesterov-invscaling", "adam", "adam-l2"])
@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "regression"])
def test_fit_follows_scikit_learns_trajectory(task, backend, params, shuffle):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 6))
    if task == "regression":
        y = X @ rng.normal(size=(6, 2)) + 0.1 * rng.normal(size=(150, 2))
        ours, theirs = MLPRegressor, SkRegressor
    else:
        ours, theirs = MLPClassifier, SkClassifier
        y = {"multiclass": (X[:, 0] > 0) + (X[:, 1] > 0.5),
             "binary": X[:, 0] + X[:, 2] > 0,
             "multilabel": np.c_[X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 1]}[task].astype(int)
    kw = dict(hidden_layer_sizes=(7, 5), activation="tanh", max_iter=6, shuffle=shuffle,
              random_state=3, tol=0, **params)
    a, b = ours(backend=backend, **kw), theirs(**kw)
    _same_start(a, b, X, y)
    assert a.n_iter_ == b.n_iter_ == 6 and a.t_ == b.t_
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)
    for mine, theirs_ in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(mine, theirs_, rtol=1e-8, atol=1e-10)


def test_lbfgs_and_early_stopping_follow_scikit_learn(backend):
    X, y = datasets.load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=(8,), max_iter=40, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(solver="lbfgs", backend=backend, **kw).fit(X, y)
        b = SkClassifier(solver="lbfgs", **kw).fit(X, y)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.loss_, b.loss_, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        kw.update(early_stopping=True, learning_rate_init=0.01, max_iter=60)
        a = MLPClassifier(backend=backend, **kw).fit(X, y)
        b = SkClassifier(**kw).fit(X, y)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.validation_scores_, b.validation_scores_)
    assert a.best_validation_score_ == b.best_validation_score_
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-8, atol=1e-10)


def _split(loader, scale):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = scale().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,loader,scale", [
    ("digits", datasets.load_digits, MinMaxScaler),
    ("iris", datasets.load_iris, StandardScaler),
    ("breast_cancer", datasets.load_breast_cancer, StandardScaler),
    ("diabetes", datasets.load_diabetes, StandardScaler),
])
def test_accuracy_matches_scikit_learn(name, loader, scale, dtype):
    X_train, X_test, y_train, y_test = _split(loader, scale)
    X_train, X_test = X_train.astype(dtype), X_test.astype(dtype)
    ours, theirs = (MLPRegressor, SkRegressor) if name == "diabetes" else (MLPClassifier,
                                                                              SkClassifier)
    kw = dict(random_state=0, max_iter=300 if name != "diabetes" else 1000,
              learning_rate_init=0.001 if name != "diabetes" else 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ours(**kw).fit(X_train, y_train)
        b = theirs(**kw).fit(X_train, y_train)
    assert a.coefs_[0].dtype == dtype and a.predict(X_test).dtype != object
    assert a.score(X_test, y_test) >= b.score(X_test, y_test) - 0.01


def test_pipeline_grid_search_clone_and_pickle():
    X, y = datasets.load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=200, learning_rate_init=0.01,
                                                       random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(5,), (20,)]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.9
    model = grid.best_estimator_
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    est = again[-1]
    assert np.shares_memory(est.coefs_[0], est._net.theta)  # views, not stale copies
    fresh = clone(est)
    assert not hasattr(fresh, "coefs_") and fresh.get_params() == est.get_params()


def test_partial_fit_warm_start_and_class_weight():
    X, y = datasets.load_iris(return_X_y=True)
    est = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, y)
    for _ in range(20):
        est.partial_fit(X, y, classes=[0, 1, 2])
    sk = SkClassifier(random_state=0)
    for _ in range(20):
        sk.partial_fit(X, y, classes=[0, 1, 2])
    # scikit-learn's n_iter_ counts the epochs of the last call; t_ and the curve go on
    assert est.n_iter_ == sk.n_iter_ == 1 and len(est.loss_curve_) == 20
    assert est.t_ == sk.t_ == 20 * len(y)
    np.testing.assert_allclose(est.coefs_[0], sk.coefs_[0], rtol=1e-8, atol=1e-10)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm = MLPClassifier(max_iter=5, warm_start=True, random_state=0).fit(X, y)
        first = warm.coefs_[0].copy()
        warm.fit(X, y)
    assert warm.n_iter_ == 5 and len(warm.loss_curve_) == 10  # n_iter_: this fit's
    assert not np.allclose(first, warm.coefs_[0])

    weighted = MLPClassifier(class_weight={0: 1.0, 1: 1.0, 2: 50.0}, max_iter=50,
                             random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted.fit(X, y)
    assert np.mean(weighted.predict(X) == 2) > 1 / 3  # class 2 wins the contested rows


def test_divergence_keeps_the_last_finite_weights():
    X, y = datasets.load_diabetes(return_X_y=True)
    est = MLPRegressor(activation="identity", solver="sgd", learning_rate_init=1.0,
                       momentum=0.9, max_iter=50, random_state=0)
    with pytest.raises(ValueError, match="diverged at epoch 2"):
        est.fit(X * 100, y)
    assert est.n_iter_ == 1 and len(est.loss_curve_) == 1
    assert all(np.all(np.isfinite(c)) for c in est.coefs_ + est.intercepts_)
    assert np.all(np.isfinite(est.predict(X)))


def test_float32_in_float32_out_and_verbose(capsys):
    X, y = datasets.load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(max_iter=3, verbose=True).fit(X.astype(np.float32), y)
    assert est.coefs_[0].dtype == np.float32
    assert est.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert "loss" in capsys.readouterr().err  # tqdm's running loss


def test_verbose_lines_stand_on_their_own_line_beside_the_bar(monkeypatch):
    """stdout and stderr on one terminal: the plateau message starts a line of its own (the
    bar is cleared first, then redrawn), and the bar's last state counts every epoch."""
    import io
    import sys

    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    X, y = datasets.load_digits(return_X_y=True)
    est = MLPClassifier(hidden_layer_sizes=(16,), tol=1e-1, verbose=True, random_state=0)
    est.fit(X, y)
    shown = terminal.getvalue()
    message = "Training loss did not improve more than tol=0.100000"
    assert message in shown
    before = shown[:shown.index(message)]
    assert before.endswith(("\r", "\n")), f"the message continues the bar: {before[-80:]!r}"
    drawn = [part for part in shown.split("\r") if "epoch" in part and "/200" in part]
    assert f"{est.n_iter_}/200" in drawn[-1]


# -- epochs in chunks: one backend call runs many epochs; nothing observable may change -------
CHUNKED = [
    dict(solver="adam", tol=1e-3, n_iter_no_change=3),  # stops on a plateau mid-chunk
    dict(solver="adam", shuffle=False),
    dict(solver="sgd", learning_rate="adaptive", tol=1e-2, n_iter_no_change=2),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, momentum=0.5),
    dict(solver="sgd", nesterovs_momentum=True, max_iter=7),  # max_iter inside a chunk
]


@pytest.mark.parametrize("params", CHUNKED, ids=["adam-plateau", "adam-noshuffle",
                                                 "sgd-adaptive", "sgd-invscaling", "max_iter"])
def test_epochs_in_chunks_equal_epoch_by_epoch(monkeypatch, backend, params):
    """Chunks of 1, 4 and 64 epochs give the same fit, warnings and random draws (the
    permutations drawn ahead for epochs that never ran are given back to the generator)."""
    from fastmlp import training

    X, y = datasets.load_digits(return_X_y=True)
    X, y = X[:400] / 16, y[:400]
    params = {"max_iter": 60, **params}
    fits = []
    for chunk in (1, 4, 64):
        monkeypatch.setattr(training, "MAX_CHUNK_EPOCHS", chunk)
        rng = np.random.RandomState(3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = MLPClassifier(hidden_layer_sizes=(20,), random_state=rng, backend=backend,
                                **params).fit(X, y)
        fits.append((est.n_iter_, est.loss_curve_, est.best_loss_, est._no_improvement_count,
                     est.t_, [str(w.message) for w in caught], rng.randint(1 << 30),
                     np.concatenate([c.ravel() for c in est.coefs_])))
    for other in fits[1:]:
        for a, b in zip(fits[0][:7], other[:7]):
            assert a == b
        np.testing.assert_array_equal(fits[0][7], other[7])
    assert fits[0][0] < params["max_iter"] or any("Maximum iterations" in m for m in fits[0][5])


def test_random_draws_match_scikit_learns_after_a_fit():
    """A RandomState passed in is consumed as scikit-learn consumes it: weights, then one
    shuffle per epoch run — so code drawing from it afterwards sees the same numbers."""
    X, y = datasets.load_iris(return_X_y=True)
    draws = []
    for cls in (MLPClassifier, SkClassifier):
        rng = np.random.RandomState(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = cls(hidden_layer_sizes=(8,), tol=1e-2, n_iter_no_change=4, max_iter=300,
                      random_state=rng).fit(X, y)
        draws.append((est.n_iter_, rng.randint(1 << 30)))
    assert draws[0] == draws[1] and draws[0][0] < 300


def test_divergence_inside_a_chunk_names_the_epoch_and_keeps_the_weights(monkeypatch):
    from fastmlp import training

    X, y = datasets.load_diabetes(return_X_y=True)
    outcomes = []
    for chunk in (64, 1):
        monkeypatch.setattr(training, "MAX_CHUNK_EPOCHS", chunk)
        est = MLPRegressor(activation="identity", solver="sgd", learning_rate_init=0.01,
                           momentum=0.9, max_iter=200, random_state=0)
        with pytest.raises(ValueError, match=r"diverged at epoch (\d+)") as info:
            est.fit(X, y)  # finite for a few epochs, then not
        epoch = int(info.value.args[0].split("epoch ")[1].split(":")[0])
        assert epoch > 2 and est.n_iter_ == epoch - 1 == len(est.loss_curve_)
        assert all(np.all(np.isfinite(c)) for c in est.coefs_ + est.intercepts_)
        outcomes.append((epoch, est.loss_curve_, est.coefs_[0].tolist()))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1347, 70001])
def test_native_epoch_orders_are_scikit_learns_shuffles(n):
    """fastmlp._shuffle draws the permutations sklearn.utils.shuffle draws, epoch after epoch,
    and leaves the generator in the same state."""
    from sklearn.utils import shuffle

    from fastmlp import training

    pytest.importorskip("fastmlp._shuffle")
    makers = [np.random.RandomState,  # MT19937, run inlined; PCG64: through its capsule
              lambda seed: np.random.RandomState(np.random.PCG64(seed))]
    for seed, make in itertools.product(range(3), makers):
        ours, theirs = make(seed), make(seed)
        for rng in (ours, theirs):  # start mid-block, with a cached Gaussian
            rng.randint(1 << 30, size=seed * 300)
            rng.standard_normal()
        start = np.arange(n)[::-1] * 2  # any index array, not only a range
        orders = training._draw_orders(start, ours, 5)
        idx = start
        for row in orders:
            idx = shuffle(idx, random_state=theirs)
            np.testing.assert_array_equal(row, idx)
        assert ours.standard_normal() == theirs.standard_normal()
        assert ours.randint(1 << 30) == theirs.randint(1 << 30)


@pytest.mark.parametrize("y", [
    np.array([3, 1, 2, 3, 1, 7]),                       # multiclass ints: encoded directly
    np.array([5.0, 2.0, 1.0, 2.0]),                     # multiclass floats: directly
    np.array(["b", "a", "c", "a"]),                     # strings: LabelBinarizer
    np.array([4, 9, 9, 4]),                             # binary: LabelBinarizer
    np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0]]),        # multilabel: LabelBinarizer
])
def test_label_encoding_is_label_binarizers(y):
    from sklearn.preprocessing import LabelBinarizer

    from fastmlp.estimators import _binarized

    binarizer = LabelBinarizer().fit(y)
    for dtype in (np.float32, np.float64):
        Y = _binarized(binarizer, y, dtype)
        assert Y.dtype == dtype
        np.testing.assert_array_equal(Y, binarizer.transform(y))
    if binarizer.y_type_ == "multiclass" and y.dtype.kind in "if":
        unseen = np.append(y[:2], y.max() + 1)  # not a class: LabelBinarizer's answer, not ours
        np.testing.assert_array_equal(_binarized(binarizer, unseen, np.float64),
                                      binarizer.transform(unseen))
