"""Bad input, numerical extremes, divergence, reproducibility, threads and memory."""
import json
import subprocess
import sys
import threading
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import BACKENDS, COMPILED, DTYPES, tol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from fastmlp import MLP, DivergenceError, MLPClassifier
from fastmlp.activations import HIDDEN_ACTIVATIONS
from fastmlp.optim import Optimizer

HERE = Path(__file__).parent


@pytest.mark.process
def test_every_bad_input_gets_a_clear_error_and_no_crash():
    """The table in _bad_inputs.py for every backend, run in one child process so a segfault
    fails the test."""
    run = subprocess.run([sys.executable, str(HERE / "_bad_inputs.py"), *BACKENDS],
                         capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    results = [r for r in lines if "ok" in r]
    failed = [r for r in results if not r["ok"]]
    assert run.returncode == 0 and not failed, (failed or lines[-1:], run.stderr[-2000:])
    assert len(results) >= 50 * len(BACKENDS)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_numerical_extremes_stay_finite(backend, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning may escape
        # inputs of 1e30 through tanh/logistic, logits of ±1e4 into softmax/CE
        for hidden, out, loss in [("tanh", "softmax", "cross_entropy"),
                                  ("logistic", "logistic", "binary_cross_entropy"),
                                  ("relu", "softmax", "cross_entropy")]:
            net = MLP([3, 4, 2], hidden, out, loss, dtype=dtype, backend=backend, random_state=0)
            X = np.array([[1e30, -1e30, 0.0], [1e3, -1e3, 1.0]], dtype)
            if hidden == "relu":
                X = np.array([[1.0, 0, 0], [0, 1.0, 0]], dtype)
                net.coefs_ = [np.eye(3, 4) * 1e4, np.array([[1e4, -1e4]] * 4)]
            Y = np.eye(2, dtype=dtype)[[1, 0]]
            value, gc, gi = net.gradients(X, Y)
            assert np.isfinite(value) and all(np.isfinite(g).all() for g in gc + gi)
        # logistic at -1e3: exactly representable tail, no overflow
        out = np.empty((1, 3), dtype)
        fastmlp.get_backend(backend).forward_layer(np.array([[-1e3, 0.0, 1e3]], dtype),
                                                   np.eye(3, dtype=dtype), np.zeros(3, dtype),
                                                   "logistic", out)
        assert out.tolist() == [[0.0, 0.5, 1.0]]


def test_divergence_restores_the_weights_and_names_the_problem(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)) * 100
    Y = rng.normal(size=(64, 2)) * 100
    net = MLP([5, 8, 2], "relu", "identity", "squared_error", backend=backend, random_state=0)
    before = net.theta.copy()
    with pytest.raises(DivergenceError, match="diverged"):
        for _ in range(20):
            before = net.theta.copy()
            net.train_epoch(X, Y, batch_size=8, learning_rate=1.0,
                            optimizer=Optimizer("sgd", momentum=0.9))
    np.testing.assert_array_equal(net.theta, before)  # the last finite weights
    assert np.isfinite(net.forward(X)).all()


def test_same_random_state_gives_bitwise_identical_fits(backend):
    X, y = load_digits(return_X_y=True)
    fits = []
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = MLPClassifier(max_iter=5, random_state=7, backend=backend, n_threads=2)
            fits.append(est.fit(X / 16, y).coefs_)
    for a, b in zip(*fits):
        np.testing.assert_array_equal(a, b)


def test_the_blas_limit_is_counted_across_overlapping_holders():
    """BLAS's thread count belongs to the process: a holder that ends first must not undo
    the limit another still relies on, and the last one out restores the original."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from fastmlp._threads import blas_thread_limit

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    with threadpool_limits(limits=2, user_api="blas"):
        original = blas_threads()
        first, second = blas_thread_limit(1), blas_thread_limit(1)
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # out of order: the second is still active
        assert blas_threads() == {1}
        second.__exit__(None, None, None)
        assert blas_threads() == original
        with blas_thread_limit(2), blas_thread_limit(1):
            assert blas_threads() == {1}  # the smallest request in force
        assert blas_threads() == original


@pytest.mark.parametrize("backend", COMPILED)
def test_two_fits_in_two_threads_match_sequential_fits(backend):
    X, y = load_digits(return_X_y=True)
    X = X / 16
    params = [dict(random_state=1, hidden_layer_sizes=(64,)),
              dict(random_state=2, hidden_layer_sizes=(40, 20), solver="sgd")]

    def fit(p):
        return MLPClassifier(max_iter=8, backend=backend, n_threads=1, **p).fit(X, y)

    # Warning filters are process-wide and catch_warnings is not thread-safe: one filter
    # around both threads, set and reset by this thread only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sequential = [fit(p) for p in params]
        for _ in range(6):  # overlapping fits used to end at the wrong BLAS limit (flaky)
            results = [None, None]
            threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, fit(params[i])))
                       for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for seq, par in zip(sequential, results):
                for a, b in zip(seq.coefs_ + seq.intercepts_, par.coefs_ + par.intercepts_):
                    np.testing.assert_array_equal(a, b)


_TEAM_PROBE = """
import sys, warnings, numpy as np
from sklearn.datasets import load_digits
from fastmlp import MLPClassifier
warnings.simplefilter("ignore")
X, y = load_digits(return_X_y=True)
for n_threads in (2, 3):
    est = MLPClassifier(max_iter=4, random_state=3, backend="cython", n_threads=n_threads)
    print(est.fit(X / 16, y).coefs_[0].tobytes().hex())
"""


@pytest.mark.process
@pytest.mark.skipif("cython" not in BACKENDS, reason="the cython backend is not built")
def test_cython_results_depend_on_the_chunks_not_on_the_openmp_team():
    """With n_threads=2 or 3 a minibatch is split into that many chunks; OpenMP may grant a
    smaller team (here OMP_THREAD_LIMIT=1: one thread runs every chunk, as in a build without
    OpenMP). The weights must be exactly those of the full team."""
    import os

    full = subprocess.run([sys.executable, "-c", _TEAM_PROBE], capture_output=True, text=True,
                          timeout=300)
    one = subprocess.run([sys.executable, "-c", _TEAM_PROBE], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, OMP_THREAD_LIMIT="1"))
    assert full.returncode == 0 and one.returncode == 0, full.stderr + one.stderr
    assert len(full.stdout.split()) == 2
    assert one.stdout == full.stdout


def test_fit_peak_memory_is_a_small_multiple_of_data_and_parameters(backend):
    rng = np.random.default_rng(0)
    X = rng.random((20000, 50))
    y = rng.integers(0, 10, 20000)
    est = MLPClassifier(hidden_layer_sizes=(64,), max_iter=2, backend=backend, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[:500], y[:500])  # compile / load kernels outside the measurement
        tracemalloc.start()
        est.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    data = X.nbytes + 20000 * 10 * 8  # X and the one-hot targets
    params = est._net.theta.nbytes
    assert peak < 3 * data + 20 * params + 5_000_000, (peak, data, params)


@st.composite
def networks(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    sizes = draw(st.lists(st.integers(1, 9), min_size=2, max_size=4))
    hidden = draw(st.sampled_from(HIDDEN_ACTIVATIONS))
    n = draw(st.integers(1, 12))
    # Finite values span many magnitudes but stay where float32 cannot overflow in a layer
    # (overflow of huge finite inputs is the extremes test's subject); NaN/inf are mixed in.
    finite = st.floats(-1e6, 1e6, width=32)
    special = st.sampled_from([np.nan, np.inf, -np.inf])
    X = draw(hnp.arrays(dtype, (n, sizes[0]), elements=st.one_of(finite, finite, finite, special)))
    labels = draw(hnp.arrays(np.int64, n, elements=st.integers(0, sizes[-1] - 1)))
    return dtype, sizes, hidden, X, np.eye(sizes[-1], dtype=dtype)[labels]


@pytest.mark.parametrize("backend", COMPILED)
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=networks())
def test_generated_inputs_give_the_reference_result_or_a_clear_error(backend, case):
    dtype, sizes, hidden, X, Y = case
    output = "softmax" if sizes[-1] > 1 else "logistic"
    loss = "cross_entropy" if output == "softmax" else "binary_cross_entropy"
    nets = [MLP(sizes, hidden, output, loss, dtype=dtype, backend=b, random_state=0)
            for b in ("numpy", backend)]
    if not np.all(np.isfinite(X)):
        for net in nets:
            with pytest.raises(ValueError, match="NaN|infinity"):
                net.forward(X)
            with pytest.raises(ValueError, match="NaN|infinity"):
                net.train_epoch(X, Y)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs = [net.forward(X) for net in nets]
        grads = [net.gradients(X, Y) for net in nets]
        losses = [net.train_epoch(X, Y, batch_size=5, optimizer="adam") for net in nets]
    np.testing.assert_allclose(outs[1], outs[0], **tol(dtype, 10))
    assert losses[1] == pytest.approx(losses[0], rel=1e-3 if dtype == np.float32 else 1e-9,
                                      abs=1e-6)
    scale = max(1.0, max(np.abs(g).max() for g in grads[0][1]))
    for g, e in zip(grads[1][1], grads[0][1]):
        np.testing.assert_allclose(g, e, **tol(dtype, 100 * scale))


def test_read_only_and_memory_mapped_inputs_are_accepted(tmp_path, backend):
    X, y = load_digits(return_X_y=True)
    X = X / 16
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")  # read-only memory map
    frozen = X.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(max_iter=3, random_state=0, backend=backend).fit(mapped, y)
        b = MLPClassifier(max_iter=3, random_state=0, backend=backend).fit(frozen, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    np.testing.assert_array_equal(a.predict(mapped), b.predict(frozen))
    net = MLP([64, 10], backend=backend, random_state=0)
    np.testing.assert_array_equal(net.forward(mapped), net.forward(X))
    assert np.array_equal(np.load(path), X)  # the user's data is untouched
