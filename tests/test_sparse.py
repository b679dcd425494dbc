"""Sparse input: every backend's sparse first layer against the dense path (the oracle).

A scipy.sparse X is read as CSR rows by the first layer's forward (X W + b) and weight
gradient (Xᵀ δ); everything after it is dense. The dense result on X.toarray() is what each
must equal, within helpers.TOL, for every format the estimators accept, odd shapes, batch 1,
empty rows, unsorted and 32-bit indices, read-only values — and X is never densified.
"""
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import COMBOS, problem, tol
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkClassifier

import fastmlp
from fastmlp import MLP, MLPClassifier, MLPRegressor
from fastmlp.activations import ACTIVATIONS
from fastmlp.backends import reference
from fastmlp.optim import Optimizer

SHAPES = [(1, 7, 33), (7, 33, 129), (33, 1, 7), (129, 257, 129), (300, 64, 70)]


def sparse_matrix(rng, n, n_in, dtype, density=0.1, empty_rows=True):
    X = sp.random(n, n_in, density=density, format="csr", dtype=np.float64,
                  random_state=np.random.RandomState(rng.integers(1 << 31)))
    X.data = rng.normal(size=X.nnz)
    if empty_rows and n > 2:
        X = X.tolil()
        X[1] = 0  # a row with no non-zero
        X = X.tocsr()
    return X.astype(dtype)


def variants(X):
    """The same matrix as the inputs a user hands over: formats, index widths, orders."""
    unsorted = X.copy()
    for i in range(unsorted.shape[0]):  # reverse each row's entries: unsorted indices
        lo, hi = unsorted.indptr[i], unsorted.indptr[i + 1]
        unsorted.indices[lo:hi] = unsorted.indices[lo:hi][::-1].copy()
        unsorted.data[lo:hi] = unsorted.data[lo:hi][::-1].copy()
    unsorted.has_sorted_indices = False
    wide = X.copy()
    wide.indices, wide.indptr = wide.indices.astype(np.int64), wide.indptr.astype(np.int64)
    readonly = X.copy()
    readonly.data.flags.writeable = False
    return {"csr": X, "csc": X.tocsc(), "coo": X.tocoo(), "csr_array": sp.csr_array(X),
            "lil": X.tolil(), "unsorted": unsorted, "int64": wide, "readonly": readonly}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_sparse_forward_layer_equals_the_dense_one(backend, dtype, activation, shape):
    kernels = fastmlp.get_backend(backend)
    n, n_in, n_out = shape
    rng = np.random.default_rng(0)
    X = sparse_matrix(rng, n, n_in, dtype)
    W = (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    expected = reference.forward_layer(X.toarray(), W, b, activation,
                                       np.empty((n, n_out), dtype), 0.1)
    for label, A in variants(X).items():
        out = np.full((n, n_out), np.nan, dtype)
        assert kernels.forward_layer(A, W, b, activation, out, 0.1) is out
        np.testing.assert_allclose(out, expected, err_msg=label, **tol(dtype))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sparse_weight_gradient_equals_the_dense_one(backend, dtype, shape):
    kernels = fastmlp.get_backend(backend)
    n, n_in, n_out = shape
    rng = np.random.default_rng(1)
    X = sparse_matrix(rng, n, n_in, dtype)
    W = rng.normal(size=(n_in, n_out)).astype(dtype)
    delta = rng.normal(size=(n, n_out)).astype(dtype)
    gW, gb = np.empty((n_in, n_out), dtype), np.empty(n_out, dtype)
    reference.backward_layer(X.toarray(), delta, W, gW, gb)
    for label, A in variants(X).items():
        got_W, got_b = np.full_like(gW, np.nan), np.full_like(gb, np.nan)
        kernels.backward_layer(A, delta, W, got_W, got_b)
        np.testing.assert_allclose(got_W, gW, err_msg=label, **tol(dtype, 10))
        np.testing.assert_allclose(got_b, gb, err_msg=label, **tol(dtype, 10))
    with pytest.raises(ValueError, match="sparse A_in is the network's input"):
        kernels.backward_layer(X, delta, W, gW, gb, np.empty((n, n_in), dtype), "relu")


@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_sparse_gradients_equal_the_dense_paths(backend, dtype, hidden, output, loss):
    sizes = [40, 9, 5]
    net = MLP(sizes, hidden, output, loss, leaky_slope=0.1, dtype=dtype, backend=backend,
              random_state=0)
    rng = np.random.default_rng(2)
    X = sparse_matrix(rng, 33, sizes[0], dtype, density=0.2)
    _, Y = problem(3, 33, sizes, output, loss, dtype)
    np.testing.assert_allclose(net.forward(X), net.forward(X.toarray()), **tol(dtype))
    dense, sparse = net.gradients(X.toarray(), Y), net.gradients(X, Y)
    assert sparse[0] == pytest.approx(dense[0], rel=10 * tol(dtype)["rtol"])
    for g, e in zip(sparse[1] + sparse[2], dense[1] + dense[2]):
        np.testing.assert_allclose(g, e, **tol(dtype, 10 * max(1, np.abs(e).max())))


@pytest.mark.parametrize("optimizer", [dict(optimizer=Optimizer("sgd", momentum=0.9, l2=1e-3)),
                                       dict(optimizer=Optimizer("adam", l2=1e-2))],
                         ids=["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [1, 7, 64, 200])
def test_sparse_training_follows_the_dense_trajectory(backend, dtype, batch_size, optimizer):
    sizes = [300, 17, 4]
    rng = np.random.default_rng(3)
    X = sparse_matrix(rng, 150, sizes[0], dtype, density=0.05)
    _, Y = problem(4, 150, sizes, "softmax", "cross_entropy", dtype)
    weights = rng.uniform(0.2, 2, 150).astype(dtype)
    orders = np.stack([rng.permutation(150) for _ in range(3)])
    nets = [MLP(sizes, dtype=dtype, backend=backend, random_state=0) for _ in range(2)]
    with fastmlp._threads.thread_limit(2):  # a dense X this size would split the minibatch
        results = [net.train_epochs(data, Y, [0.01] * 3, batch_size=batch_size,
                                    sample_weight=weights, orders=orders, **optimizer)
                   for net, data in zip(nets, (X.toarray(), X))]
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=50 * tol(dtype)["rtol"])
    np.testing.assert_allclose(nets[1].theta, nets[0].theta, rtol=50 * tol(dtype)["rtol"],
                               atol=50 * tol(dtype)["atol"])
    assert nets[1].optimizer_state.t == nets[0].optimizer_state.t


def test_sparse_training_is_bitwise_repeatable(compiled_backend):
    X = sparse_matrix(np.random.default_rng(4), 200, 500, np.float64, density=0.02)
    y = np.arange(200) % 3
    fits = [MLPClassifier(hidden_layer_sizes=(20,), max_iter=5, random_state=0,
                          backend=compiled_backend, n_threads=n).fit(X, y) for n in (1, 2, 2)]
    for other in fits[1:]:
        np.testing.assert_array_equal(other._net.theta, fits[0]._net.theta)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_estimators_fit_sparse_as_dense_and_as_scikit_learn(backend, solver):
    rng = np.random.default_rng(5)
    X = sparse_matrix(rng, 120, 80, np.float64, density=0.1)
    y = rng.integers(0, 3, 120)
    params = dict(hidden_layer_sizes=(10,), solver=solver, max_iter=8, random_state=0,
                  batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(backend=backend, **params).fit(X.toarray(), y)
        theirs = SkClassifier(**params).fit(X, y)
        for label, A in variants(X).items():
            ours = MLPClassifier(backend=backend, **params).fit(A, y)
            np.testing.assert_allclose(ours._net.theta, dense._net.theta, rtol=1e-9,
                                       atol=1e-12, err_msg=label)
            np.testing.assert_allclose(ours.predict_proba(A), theirs.predict_proba(X),
                                       rtol=1e-7, err_msg=label)
            np.testing.assert_array_equal(ours.predict(A), dense.predict(X.toarray()))
            assert ours.score(A, y) == dense.score(X.toarray(), y)
        if solver != "lbfgs":
            ours = MLPClassifier(backend=backend, **params)
            ours.partial_fit(X, y, classes=[0, 1, 2])
            ref = MLPClassifier(backend=backend, **params).partial_fit(X.toarray(), y,
                                                                    classes=[0, 1, 2])
            np.testing.assert_allclose(ours._net.theta, ref._net.theta, rtol=1e-9, atol=1e-12)


def test_regressor_and_early_stopping_on_sparse_input(backend, dtype):
    rng = np.random.default_rng(6)
    X = sparse_matrix(rng, 200, 60, dtype, density=0.1)
    y = (X @ rng.normal(size=60)).astype(dtype)
    params = dict(hidden_layer_sizes=(8,), max_iter=6, random_state=0, early_stopping=True,
                  backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(**params).fit(X, y)
        dense = MLPRegressor(**params).fit(X.toarray(), y)
    assert ours.coefs_[0].dtype == dtype
    np.testing.assert_allclose(ours.validation_scores_, dense.validation_scores_,
                               rtol=50 * tol(dtype)["rtol"])
    np.testing.assert_allclose(ours.predict(X), dense.predict(X.toarray()),
                               **tol(dtype, 100))


def test_bad_sparse_input_is_a_clear_error_before_any_kernel(backend):
    net = MLP([10, 4, 3], backend=backend, random_state=0)
    X = sparse_matrix(np.random.default_rng(7), 20, 10, np.float64, density=0.3)
    Y = np.eye(3)[np.arange(20) % 3]
    bad_value = X.copy()
    bad_value.data[2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.train_epochs(bad_value, Y, [0.1])
    out_of_range = X.copy()
    out_of_range.indices[0] = 10  # a column the matrix does not have
    with pytest.raises(ValueError, match="not a valid CSR"):
        net.gradients(out_of_range, Y)
    with pytest.raises(ValueError, match="expected \\(n, 10\\)|10 features|columns"):
        net.forward(sparse_matrix(np.random.default_rng(8), 5, 11, np.float64))
    est = MLPClassifier(backend=backend, max_iter=2).fit(X, np.arange(20) % 3)
    with pytest.raises(ValueError, match="features"):
        est.predict(sp.csr_matrix((3, 9)))
    empty = sp.csr_matrix((20, 10))  # no non-zero at all: trains on the biases alone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(backend=backend, max_iter=2).fit(empty, np.arange(20) % 3).predict(empty)


def test_sparse_input_is_never_densified(backend):
    """A wide matrix (4 000 × 100 000, 0.05 % dense) trains in memory proportional to its
    non-zeros and the weights: its dense form would be 3.2 GB."""
    rng = np.random.default_rng(9)
    rows, cols = np.repeat(np.arange(4000), 50), rng.integers(0, 100_000, 4000 * 50)
    X = sp.csr_matrix((rng.random(rows.size, np.float32), (rows, cols)), shape=(4000, 100_000))
    y = rng.integers(0, 2, 4000)
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, backend=backend, random_state=0)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y).predict_proba(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    weights = est._net.theta.nbytes
    assert peak < 20 * weights + 20 * X.data.nbytes, f"peak {peak / 1e6:.1f} MB"


def test_a_fitted_model_keeps_no_training_buffers(backend):
    """After fit, the model holds θ and the optimizer's moments, not the gradient and the
    guard's snapshot (four more copies of θ); partial_fit keeps them for the next call."""
    X = sparse_matrix(np.random.default_rng(10), 100, 50, np.float64)
    y = np.arange(100) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, backend=backend).fit(X, y)
    assert not est._net.scratch
    est.partial_fit(X, y)
    if backend != "numpy":  # the reference allocates per call
        assert "training" in est._net.scratch
