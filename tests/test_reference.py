"""The reference backend against finite differences and a network worked by hand."""
import warnings

import numpy as np
import pytest
from helpers import COMBOS, DTYPES, problem

import fastmlp
from fastmlp import MLP, activations, losses
from fastmlp.backends import reference
from fastmlp.optim import Optimizer


def flat_gradient(net, X, Y, w=None):
    loss, gc, gi = net.gradients(X, Y, w)
    return loss, np.concatenate([g.ravel() for pair in zip(gc, gi) for g in pair])


def finite_differences(net, X, Y, w=None, h=1e-6):
    """Central differences of the summed loss with respect to every parameter (float64)."""
    theta = net.theta
    fd = np.empty_like(theta)
    for i in range(theta.size):
        old = theta[i]
        theta[i] = old + h
        up = net.loss(X, Y, w)
        theta[i] = old - h
        down = net.loss(X, Y, w)
        theta[i] = old
        fd[i] = (up - down) / (2 * h)
    return fd


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_gradients_match_finite_differences(hidden, output, loss, dtype):
    sizes = [5, 4, 3, 3]
    net64 = MLP(sizes, hidden, output, loss, leaky_slope=0.1, backend="numpy", random_state=1)
    X, Y = problem(2, 7, sizes, output, loss)
    w = np.random.default_rng(3).uniform(0.5, 2.0, 7)
    fd = finite_differences(net64, X, Y, w)
    if dtype == np.float64:
        _, grad = flat_gradient(net64, X, Y, w)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())
    else:  # float32 analytic gradient against the float64 differences of the same net
        net32 = MLP(sizes, hidden, output, loss, leaky_slope=0.1, dtype=np.float32,
                    backend="numpy")
        net32.theta[...] = net64.theta
        _, grad = flat_gradient(net32, X, Y, w)
        assert grad.dtype == np.float32
        np.testing.assert_allclose(grad, fd, rtol=2e-3, atol=2e-4 * np.abs(fd).max())


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_worked_example_from_the_article():
    """Logistic hidden and output, squared error, one SGD step, written as the article's sums.

    Article's notation: w_ji input→hidden, w_kj hidden→output, Δw = η (r_k - y_k) y_k (1-y_k) x_j…
    """
    x = np.array([0.05, 0.10])
    r = np.array([0.01, 0.99])
    w_ji = np.array([[0.15, 0.20], [0.25, 0.30], [0.35, 0.40]])  # (hidden j, input i)
    b_j = np.array([0.35, 0.35, 0.35])
    w_kj = np.array([[0.40, 0.45, 0.50], [0.50, 0.55, 0.60]])  # (output k, hidden j)
    b_k = np.array([0.60, 0.60])
    eta = 0.5

    x_j = np.array([sigmoid(sum(w_ji[j, i] * x[i] for i in range(2)) + b_j[j]) for j in range(3)])
    y_k = np.array([sigmoid(sum(w_kj[k, j] * x_j[j] for j in range(3)) + b_k[k]) for k in range(2)])
    e_k = (r - y_k) * y_k * (1 - y_k)
    new_w_kj = w_kj + eta * np.outer(e_k, x_j)
    new_b_k = b_k + eta * e_k
    e_j = np.array([sum(e_k[k] * w_kj[k, j] for k in range(2)) * x_j[j] * (1 - x_j[j])
                    for j in range(3)])
    new_w_ji = w_ji + eta * np.outer(e_j, x)
    new_b_j = b_j + eta * e_j
    loss = sum(0.5 * (r[k] - y_k[k]) ** 2 for k in range(2))

    net = MLP([2, 3, 2], "logistic", "logistic", "squared_error", backend="numpy")
    net.coefs_ = [w_ji.T, w_kj.T]  # fastmlp stores (n_in, n_out): the transpose
    net.intercepts_ = [b_j, b_k]
    np.testing.assert_allclose(net.forward(x[None]), y_k[None], rtol=1e-12)
    assert net.loss(x[None], r[None]) == pytest.approx(loss, rel=1e-12)
    mean_loss = net.train_epoch(x[None], r[None], batch_size=1, learning_rate=eta)
    assert mean_loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(net.coefs_[0], new_w_ji.T, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(net.coefs_[1], new_w_kj.T, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(net.intercepts_[0], new_b_j, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(net.intercepts_[1], new_b_k, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("output,loss", [("softmax", "cross_entropy"),
                                         ("logistic", "binary_cross_entropy"),
                                         ("logistic", "cross_entropy"),
                                         ("softmax", "binary_cross_entropy"),
                                         ("softmax", "squared_error"),
                                         ("logistic", "squared_error")])
def test_extreme_logits_give_finite_loss_and_gradients(output, loss, dtype):
    net = MLP([3, 4], "relu", output, loss, dtype=dtype, backend="numpy", random_state=0)
    net.coefs_ = [np.array([[1e4, -1e4, 0, 1e4], [-1e4, 1e4, 0, 1], [0, 0, 1e4, -1e4]])]
    net.intercepts_ = [np.zeros(4)]
    X = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0], [1, 1, 1]])
    Y = np.eye(4)[[1, 0, 2, 3]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = net.forward(X)
        loss_value, gc, gi = net.gradients(X, Y)
    assert np.all(np.isfinite(out)) and np.isfinite(loss_value)
    assert all(np.all(np.isfinite(g)) for g in gc + gi)
    if loss != "squared_error":  # confidently wrong rows cost a lot, each output at most
        cap = -np.log(np.finfo(dtype).eps)  # scikit-learn's: its log losses clip to [eps, 1-eps]
        assert 2 * cap < loss_value <= Y.size * cap


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_logistic_is_exact_in_both_tails(dtype):
    Z = np.array([[-1e4, -1e3, -50.0, 0.0, 50.0, 1e3, 1e4]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A = activations.activate(Z.copy(), "logistic")
    assert A.dtype == dtype and np.all(np.isfinite(A))
    assert A[0, 3] == 0.5 and A[0, -1] == 1.0 and A[0, 0] == 0.0
    np.testing.assert_allclose(A[0, 2], np.exp(-50.0), rtol=1e-6)  # the tail is not lost


def test_shard_gradients_sum_to_the_batch_gradient():
    sizes = [6, 8, 5, 4]
    net = MLP(sizes, "tanh", "softmax", "cross_entropy", backend="numpy", random_state=0)
    X, Y = problem(0, 23, sizes)
    w = np.random.default_rng(1).uniform(0.1, 3, 23)
    loss, whole = flat_gradient(net, X, Y, w)
    parts = [flat_gradient(net, X[a:b], Y[a:b], w[a:b]) for a, b in [(0, 5), (5, 6), (6, 23)]]
    assert sum(p[0] for p in parts) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(sum(p[1] for p in parts), whole, rtol=1e-12, atol=1e-13)


def test_mean_reduction_divides_by_the_weight_sum():
    sizes = [3, 4, 2]
    net = MLP(sizes, "relu", "softmax", "cross_entropy", backend="numpy", random_state=0)
    X, Y = problem(0, 9, sizes)
    s_loss, s_gc, _ = net.gradients(X, Y)
    m_loss, m_gc, _ = net.gradients(X, Y, reduction="mean")
    assert m_loss == pytest.approx(s_loss / 9)
    np.testing.assert_allclose(m_gc[0], s_gc[0] / 9)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("opt", [dict(optimizer="sgd", learning_rate=0.1),
                                 dict(optimizer=Optimizer("sgd", 0.05, momentum=0.9)),
                                 dict(optimizer=Optimizer("sgd", 0.05, momentum=0.9,
                                                          nesterov=True)),
                                 dict(optimizer="adam", learning_rate=0.01),
                                 dict(optimizer=Optimizer("adam", 0.01, l2=1e-3))],
                         ids=["sgd", "momentum", "nesterov", "adam", "adam-l2"])
def test_training_reduces_the_loss_on_a_separable_problem(opt, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (200, 2)).astype(dtype)
    labels = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    Y = np.eye(2, dtype=dtype)[labels]
    net = MLP([2, 8, 2], "tanh", dtype=dtype, backend="numpy", random_state=0)
    first = net.train_epoch(X, Y, batch_size=20, **opt)
    for epoch in range(20):
        last = net.train_epoch(X, Y, batch_size=20, shuffle=True, random_state=epoch, **opt)
    assert last < 0.5 * first
    assert net.theta.dtype == dtype and net.forward(X).dtype == dtype
    assert np.mean(net.forward(X).argmax(1) == labels) > 0.95


def test_sgd_and_adam_match_the_written_formulas():
    from fastmlp import optim

    g = np.array([0.5, -1.0, 2.0])
    opt = optim.Optimizer("sgd", learning_rate=0.1, momentum=0.9, nesterov=True)
    theta, state = np.zeros(3), optim.OptimizerState.zeros(3, np.float64)
    optim.step(theta, g, opt, state)
    optim.step(theta, g, opt, state)
    v1 = -0.1 * g
    v2 = 0.9 * v1 - 0.1 * g
    np.testing.assert_allclose(theta, (0.9 * v1 - 0.1 * g) + (0.9 * v2 - 0.1 * g))

    opt = optim.Optimizer("adam", learning_rate=0.01)
    theta, state = np.zeros(3), optim.OptimizerState.zeros(3, np.float64)
    optim.step(theta, g, opt, state)
    m, s = 0.1 * g, 0.001 * g * g
    step = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_allclose(theta, -step * m / (np.sqrt(s) + 1e-8))
    assert state.t == 1


def test_glorot_initialisation_draws_as_scikit_learn():
    net = MLP([5, 7, 3], "logistic", backend="numpy", random_state=42)
    rng = np.random.RandomState(42)
    for W, b in zip(net.coefs_, net.intercepts_):
        bound = np.sqrt(2.0 / (W.shape[0] + W.shape[1]))
        np.testing.assert_array_equal(W, rng.uniform(-bound, bound, W.shape))
        np.testing.assert_array_equal(b, rng.uniform(-bound, bound, b.shape))


def test_loss_pairs_outside_the_domain_are_rejected():
    with pytest.raises(ValueError, match="outputs in \\(0, 1\\)"):
        MLP([3, 2], output_activation="identity", loss="cross_entropy")
    with pytest.raises(ValueError, match="unknown hidden activation"):
        MLP([3, 4, 2], hidden_activation="softmax")
    with pytest.raises(ValueError, match="leaky_slope"):
        MLP([3, 4, 2], hidden_activation="leaky_relu", leaky_slope=1.5)
    with pytest.raises(ValueError, match="'poisson' needs positive outputs"):
        MLP([3, 2], output_activation="identity", loss="poisson")
    with pytest.raises(ValueError, match="'squared_error' needs an output it is defined for"):
        MLP([3, 2], output_activation="exp", loss="squared_error")
    with pytest.raises(ValueError, match="unknown hidden activation 'exp'"):
        MLP([3, 4, 2], hidden_activation="exp", output_activation="exp", loss="poisson")
    assert set(losses.LOSSES) == {"squared_error", "cross_entropy", "binary_cross_entropy",
                                  "poisson"}


def test_registry():
    from fastmlp.backends import Backend, Kernels

    assert "numpy" in fastmlp.available_backends()
    assert fastmlp.get_backend("numpy") is reference.backend
    for name in fastmlp.available_backends():
        backend = fastmlp.get_backend(name)
        assert isinstance(backend, Backend) and isinstance(backend.unchecked, Kernels)
        assert backend.name == name and fastmlp.get_backend(backend) is backend
    assert fastmlp.get_backend("auto").name in fastmlp.available_backends()
    with pytest.raises(TypeError, match="Can't instantiate abstract class"):
        Kernels()
    with pytest.raises(ValueError, match="unknown backend"):
        fastmlp.get_backend("fortran")


def test_the_old_optimizer_keywords_warn_and_train_as_the_optimizer():
    """train_epoch(s)' settings moved into optim.Optimizer; the old keyword arguments still
    work for one release, with a FutureWarning, and train exactly as the Optimizer does."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 3)), np.eye(2)[rng.integers(0, 2, 40)]
    old, new = (MLP([3, 5, 2], backend="numpy", random_state=0) for _ in range(2))
    with pytest.warns(FutureWarning, match="l2, momentum as keyword arguments"):
        old.train_epoch(X, Y, 8, 0.1, "sgd", momentum=0.9, l2=1e-2)
    new.train_epoch(X, Y, 8, optimizer=Optimizer("sgd", 0.1, momentum=0.9, l2=1e-2))
    np.testing.assert_array_equal(old.theta, new.theta)
    with pytest.warns(FutureWarning):
        old.train_epochs(X, Y, [0.1, 0.05], 8, "adam", beta_1=0.8, epsilon=1e-6)
    new.train_epochs(X, Y, [0.1, 0.05], 8, Optimizer("adam", beta_1=0.8, epsilon=1e-6))
    np.testing.assert_array_equal(old.theta, new.theta)
    with pytest.raises(TypeError, match="not beside it"), pytest.warns(FutureWarning):
        new.train_epoch(X, Y, optimizer=Optimizer("sgd"), momentum=0.9)
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        new.train_epoch(X, Y, learning_rate_init=0.1)


def test_run_epochs_warns_and_runs_a_training_job():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(30, 3)), np.eye(2)[rng.integers(0, 2, 30)]
    old, new = (MLP([3, 4, 2], backend="numpy", random_state=0) for _ in range(2))
    opt = Optimizer("adam", 0.01)
    with pytest.warns(FutureWarning, match="MLP.training_job"):
        terms, event = old.run_epochs(X, Y, None, None, [0.01, 0.02], 8, opt)
    expected, expected_event = new.training_job(X, Y, None, 8, opt).run(None, [0.01, 0.02])
    np.testing.assert_array_equal(terms, expected)
    np.testing.assert_array_equal(old.theta, new.theta)
    assert event == expected_event == "completed"
