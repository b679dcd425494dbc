"""The trainer's Network protocol (fastmlp.training.Network), run against every implementation:
the MLP (each backend) and the Dask stand-in. A diverging run must leave the weights, the
moments and t as after the last completed epoch, in both; so must an interrupted one."""
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

import fastmlp
from fastmlp import MLP, MLPRegressor, optim
from fastmlp.model import DivergenceError
from fastmlp.stopping import Plateau

SIZES = (6, 9, 3)


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, SIZES[0]))
    Y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], n)]
    return X, Y


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None, silence_logs=40)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _mlp(backend, output="softmax", loss="cross_entropy"):
    return MLP(SIZES, "relu", output, loss, backend=backend, random_state=0)


def _networks(request, output="softmax", loss="cross_entropy"):
    """(name, network, X, Y for training_job) for every implementation."""
    X, Y = _data()
    if output == "identity":
        X = X * 1e3
    nets = [(b, _mlp(b, output, loss), X, Y) for b in fastmlp.available_backends()]
    try:
        import dask.array as da

        from fastmlp import distributed as fd
    except ImportError:  # without the [dask] extra: the MLPs alone
        return nets
    if True:

        client = request.getfixturevalue("client")
        net = _mlp("numpy", output, loss)
        proxy = fd._distributed_network(client, net, da.from_array(X, chunks=(50, -1)),
                                        da.from_array(Y, chunks=(50, -1)), None, 1)
        rows = np.empty((X.shape[0], 0))  # a stand-in reads only the row count
        nets.append(("dask", proxy, rows, rows))
    return nets


def test_training_jobs_and_loss_and_gradient_agree_across_implementations(request):
    opt = optim.Optimizer("adam", 0.01)
    X, Y = _data()
    orders = np.stack([np.random.default_rng(e).permutation(len(X)) for e in range(3)])
    results = {}
    for name, net, Xn, Yn in _networks(request):
        terms, event = net.training_job(Xn, Yn, None, 40, opt).run(orders, [0.01] * 3)
        assert event == "completed" and terms.shape == (3, 2)
        grad = np.empty_like(net.theta)
        loss = net.loss_and_gradient(Xn, Yn, None, grad)
        results[name] = (terms, net.theta.copy(), loss, grad, net.output(X))
    reference = results["numpy"]
    for name, (terms, theta, loss, grad, output) in results.items():
        np.testing.assert_allclose(output, reference[4], rtol=1e-8, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(terms, reference[0], rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(theta, reference[1], rtol=1e-8, atol=1e-10, err_msg=name)
        np.testing.assert_allclose(loss, reference[2], rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(grad, reference[3], rtol=1e-8, atol=1e-10, err_msg=name)


def test_the_plateau_rule_ends_the_run_after_the_same_epoch(request):
    opt = optim.Optimizer("sgd", 0.01)
    for name, net, Xn, Yn in _networks(request):
        rule = Plateau(tol=10.0, patience=1)  # the 2nd and 3rd improve by < 10: the 3rd ends it
        terms, event = net.training_job(Xn, Yn, None, 30, opt).run(None, [0.01] * 5, rule)
        assert (event, len(terms), rule.count) == ("plateau", 3, 2), name


def test_a_diverging_run_restores_the_last_completed_epoch(request):
    opt = optim.Optimizer("sgd", 1.0, momentum=0.9)
    for name, net, Xn, Yn in _networks(request, "identity", "squared_error"):
        first, event = net.training_job(Xn, Yn, None, 30, opt).run(None, [1e-9])
        assert event == "completed", name
        theta, state = net.theta.copy(), net.optimizer_state
        moments = state.first.copy(), state.second.copy(), state.t
        terms, event = net.training_job(Xn, Yn, None, 30, opt).run(None, [10.0] * 3)
        assert event == "diverged" and len(terms) == 0, name
        np.testing.assert_array_equal(net.theta, theta, err_msg=name)
        np.testing.assert_array_equal(state.first, moments[0], err_msg=name)
        assert state.t == moments[2], name


def test_a_diverging_distributed_fit_keeps_finite_weights(client):
    da = pytest.importorskip("dask.array")
    from fastmlp import distributed as fd

    X, y = load_diabetes(return_X_y=True)
    params = dict(activation="identity", solver="sgd", learning_rate_init=0.01, momentum=0.9,
                  max_iter=200, random_state=0, backend="numpy")
    local = MLPRegressor(**params)
    with pytest.raises(DivergenceError, match=r"diverged at epoch (\d+)") as expected:
        local.fit(X, y)
    est = MLPRegressor(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DivergenceError, match="a first fit keeps the weights") as info:
            fd.fit(est, da.from_array(X, chunks=(150, -1)), da.from_array(y, chunks=150),
                   client=client)
    assert str(info.value) == str(expected.value)
    assert all(np.all(np.isfinite(c)) for c in est.coefs_ + est.intercepts_)
    assert est.n_iter_ == local.n_iter_ == len(est.loss_curve_)
    np.testing.assert_allclose(est.loss_curve_, local.loss_curve_, rtol=1e-9)


def test_a_raised_stop_flag_ends_a_run_with_the_epoch_undone(request):
    """Every Network honours the stop flag after a minibatch: event "interrupted", nothing
    of the epoch under way kept (θ, moments, t), and the time budget ends a call early."""
    opt = optim.Optimizer("adam", 0.01)
    X, Y = _data()
    for name, net, Xn, Yn in _networks(request):
        net.training_job(Xn, Yn, None, 40, opt).run(None, [0.01])  # moments that are not zero
        state = net.optimizer_state
        before = net.theta.copy(), state.first.copy(), state.second.copy(), state.t
        terms, event = net.training_job(Xn, Yn, None, 40, opt).run(None, [0.01] * 3,
                                      stop=np.ones(1, np.int64))
        assert (event, len(terms)) == ("interrupted", 0), name
        np.testing.assert_array_equal(net.theta, before[0], err_msg=name)
        np.testing.assert_array_equal(state.first, before[1], err_msg=name)
        np.testing.assert_array_equal(state.second, before[2], err_msg=name)
        assert state.t == before[3], name
        terms, event = net.training_job(Xn, Yn, None, 40, opt).run(None, [0.01] * 50,
                                      time_budget=1e-9)
        assert (event, len(terms)) == ("completed", 1), name
