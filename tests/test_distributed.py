"""Data-parallel training on a LocalCluster: exact sums, equal fits, lost workers."""
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

pytestmark = pytest.mark.process  # a LocalCluster's worker processes

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastmlp  # noqa: E402
from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402
from fastmlp import distributed as fd  # noqa: E402

BACKEND = fastmlp.get_backend("auto").name


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    return X, y


@pytest.mark.parametrize("chunks", [(100, 500), (50, 250, 300), (7, 93, 200, 150, 150)])
def test_block_gradient_sums_equal_the_single_process_gradient(client, chunks):
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(hidden_layer_sizes=(9,), max_iter=2, random_state=0,
                            backend=BACKEND).fit(X, y)
    Y = np.eye(3)[y]
    loss, grad = fd.loss_and_gradient(est, da.from_array(X, chunks=(chunks, 8)),
                                      da.from_array(Y, chunks=(chunks, 3)), client)
    expected = np.empty_like(est._net.theta)
    expected_loss = est._net.loss_and_gradient(X, Y, None, expected)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("solver", ["sgd", "adam", "adamw", "lbfgs"])
def test_distributed_fit_equals_the_single_process_fit(client, solver):
    X, y = _data()
    kw = dict(hidden_layer_sizes=(10,), solver=solver, batch_size=120, max_iter=4,
              random_state=1, backend=BACKEND, learning_rate_init=0.05)  # 20 steps (sgd/adam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPClassifier(**kw).fit(X, y)
        dist = fd.fit(MLPClassifier(**kw), da.from_array(X, chunks=(170, 8)),
                      da.from_array(y, chunks=170), client=client)
    assert dist.n_iter_ == local.n_iter_
    for a, b in zip(dist.coefs_ + dist.intercepts_, local.coefs_ + local.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    pred = fd.predict(dist, da.from_array(X, chunks=(170, 8))).compute()
    np.testing.assert_array_equal(pred, local.predict(X))
    proba = fd.predict_proba(dist, da.from_array(X, chunks=(170, 8))).compute()
    np.testing.assert_allclose(proba, local.predict_proba(X), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_warm_start_continues_as_the_single_process_fit(client, solver):
    """distributed.fit is the estimator's own fit: warm_start continues from the weights
    and classes of the fit before, as estimator.fit does, and refuses new classes alike."""
    X, y = _data()
    kw = dict(hidden_layer_sizes=(10,), solver=solver, batch_size=120, max_iter=2,
              random_state=1, backend=BACKEND, learning_rate_init=0.05, warm_start=True)
    X_d, y_d = da.from_array(X, chunks=(170, 8)), da.from_array(y, chunks=170)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPClassifier(**kw).fit(X, y).fit(X, y)
        dist = fd.fit(fd.fit(MLPClassifier(**kw), X_d, y_d, client=client), X_d, y_d,
                      client=client)
    assert dist.n_iter_ == local.n_iter_ and dist.t_ == local.t_ == 2 * 2 * len(X)
    for a, b in zip(dist.coefs_ + dist.intercepts_, local.coefs_ + local.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    before = [a.copy() for a in dist.coefs_]
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same "
                                         "classes"):
        fd.fit(dist, X_d, da.from_array(np.minimum(y, 1), chunks=170), client=client)
    for a, b in zip(dist.coefs_, before):  # the failed refit changed nothing
        np.testing.assert_array_equal(a, b)


def test_regression_with_sample_weights(client):
    X, _ = _data()
    target = X @ np.arange(8.0)
    w = np.linspace(0.5, 2, len(X))
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", batch_size=100, max_iter=3,
              random_state=0, backend=BACKEND, learning_rate_init=0.001)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPRegressor(**kw).fit(X, target, sample_weight=w)
        dist = fd.fit(MLPRegressor(**kw), da.from_array(X, chunks=(250, 8)),
                      da.from_array(target, chunks=250), sample_weight=da.from_array(w, 250),
                      client=client)
    np.testing.assert_allclose(dist.coefs_[0], local.coefs_[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-6)


def _slow_block(block):
    time.sleep(0.05)
    return block


def test_a_worker_killed_mid_fit_changes_nothing(client):
    """SIGKILL one worker mid-fit: its shard is rebuilt on a live worker (its rows computed
    again from their source) and the step is asked again; the sums are added in shard order,
    whichever worker holds a shard, so the weights are the clean fit's bits."""
    X, y = _data(900)
    kw = dict(hidden_layer_sizes=(10,), solver="sgd", batch_size=30, max_iter=40, tol=0,
              n_iter_no_change=1000, random_state=2, backend=BACKEND)
    X_d = da.from_array(X, chunks=(150, 8)).map_blocks(_slow_block, meta=np.empty((0, 0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.monotonic()
        clean = fd.fit(MLPClassifier(**kw), X_d, da.from_array(y, chunks=150), client=client)
        took = time.monotonic() - start

        pids = client.run(os.getpid)  # {worker address: pid}, local processes
        victim = sorted(pids.values())[0]

        def kill_one_worker():
            time.sleep(took / 2)  # mid-fit
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        timings = {}
        faulty = fd.fit(MLPClassifier(**kw), X_d, da.from_array(y, chunks=150), client=client,
                        timings=timings)
        killer.join()
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()  # the worker really died
    assert timings["rebuilt"] >= 1, timings  # ... during the fit
    for a, b in zip(faulty.coefs_ + faulty.intercepts_, clean.coefs_ + clean.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_a_worker_lost_while_the_shards_are_built_changes_nothing(client, monkeypatch):
    """A worker lost while a shard's actor is built (Dask: "Worker holding Actor was lost",
    as a kill in the fit's first second gives) is met like one lost mid-fit: the shard is
    built again on a live worker, and the fit is the clean fit's bits."""
    X, y = _data(600)
    kw = dict(hidden_layer_sizes=(10,), solver="sgd", batch_size=60, max_iter=5,
              random_state=2, backend=BACKEND)
    X_d, y_d = da.from_array(X, chunks=(150, 8)), da.from_array(y, chunks=150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clean = fd.fit(MLPClassifier(**kw), X_d, y_d, client=client)
        original, failures = fd._Shards._submit, []

        class Lost:  # the actor's future, as its worker dies: the loss shows at result()
            def result(self):
                raise RuntimeError("Worker holding Actor was lost")

        def lost_the_first_time(self, k, worker):
            if k == 1 and not failures:
                failures.append(worker)
                return Lost()
            return original(self, k, worker)

        monkeypatch.setattr(fd._Shards, "_submit", lost_the_first_time)
        timings = {}
        faulty = fd.fit(MLPClassifier(**kw), X_d, y_d, client=client, timings=timings)
    assert failures and timings["rebuilt"] == 1
    for a, b in zip(faulty.coefs_ + faulty.intercepts_, clean.coefs_ + clean.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_unknown_chunk_sizes_are_named_with_how_to_compute_them(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = dd.from_pandas(pd.DataFrame({"a": np.arange(10.0), "b": np.arange(10) % 2}),
                           npartitions=2)
    with pytest.raises(ValueError, match=r"X has unknown chunk sizes .* "
                                         r"X\.compute_chunk_sizes\(\)"):
        fd.fit(MLPClassifier(), frame[["a"]].values, frame["b"].values, client=client)
    with pytest.raises(ValueError, match=r"y has unknown chunk sizes"):
        fd.fit(MLPClassifier(), frame[["a"]].to_dask_array(lengths=True), frame["b"].values,
               client=client)


def _poison(block):
    os.kill(os.getpid(), signal.SIGKILL)
    return block


def test_a_task_that_always_kills_its_worker_ends_in_a_clear_error(client):
    X, y = _data(300)
    X_d = da.from_array(X, chunks=(100, 8))
    X_d = da.concatenate([X_d[:200], X_d[200:].map_blocks(_poison, meta=np.empty((0, 0)))])
    start = time.time()
    with pytest.raises(Exception, match="KilledWorker|kept failing|killed"):
        fd.fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, backend=BACKEND), X_d,
               da.from_array(y, chunks=100), client=client, retries=1)
    assert time.time() - start < 240
    client.wait_for_workers(2, timeout=60)


def test_without_dask_the_import_error_names_the_extra():
    import subprocess
    import sys

    code = ("import sys; sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
            "try:\n    import fastmlp.distributed\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "fastmlp[dask]" in out


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_empty_blocks_and_zero_weight_minibatches_change_nothing(client, solver):
    """An empty block is skipped for every solver (lbfgs asked it for 0 rows' sums); a
    minibatch whose weights are all zero makes no step, as in estimator.fit."""
    X, y = _data()
    target = X @ np.arange(8.0) / 10
    w = np.ones(len(X))
    w[120:240] = 0  # the second minibatch of 120 (shuffle off)
    kw = dict(hidden_layer_sizes=(6,), solver=solver, batch_size=120, max_iter=3,
              shuffle=False, random_state=0, backend=BACKEND, learning_rate_init=0.001)
    chunks = (200, 0, 150, 0, 250)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPRegressor(**kw).fit(X, target, sample_weight=w)
        dist = fd.fit(MLPRegressor(**kw), da.from_array(X, chunks=(chunks, 8)),
                      da.from_array(target, chunks=(chunks,)),
                      sample_weight=da.from_array(w, chunks=(chunks,)), client=client)
    assert dist.n_iter_ == local.n_iter_
    for a, b in zip(dist.coefs_ + dist.intercepts_, local.coefs_ + local.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
        assert np.all(np.isfinite(a))
    with pytest.raises(ValueError, match="sample_weight sums to zero"):
        fd.fit(MLPRegressor(**kw), da.from_array(X, chunks=(chunks, 8)),
               da.from_array(target, chunks=(chunks,)),
               sample_weight=da.from_array(w * 0, chunks=(chunks,)), client=client)


def test_dask_dataframe_input_fits_as_the_arrays_do(client):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    X, y = _data(500)
    frame = dd.from_pandas(pd.DataFrame(X, columns=[f"f{i}" for i in range(8)]),
                           npartitions=3)
    labels = dd.from_pandas(pd.Series(y, name="label"), npartitions=3)
    kw = dict(hidden_layer_sizes=(7,), solver="adam", batch_size=50, max_iter=3,
              random_state=0, backend=BACKEND)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = MLPClassifier(**kw).fit(X, y)
        dist = fd.fit(MLPClassifier(**kw), frame, labels, client=client)
    for a, b in zip(dist.coefs_ + dist.intercepts_, local.coefs_ + local.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(fd.predict(dist, frame).compute(), local.predict(X))


def test_sparse_blocks_are_refused_with_a_clear_error(client):
    import scipy.sparse as sp

    X = da.from_array(sp.random(40, 6, density=0.3, format="csr"), chunks=(20, 6),
                      asarray=False)
    with pytest.raises(TypeError, match="sparse blocks"):
        fd.fit(MLPClassifier(max_iter=1), X, da.from_array(np.arange(40) % 2, chunks=20),
               client=client)
