"""A network or a fit too big for the machine is refused before anything is allocated, and
the estimate behind the refusal is a lower bound of what a fit allocates (so a fit that fits
is never refused)."""
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from fastmlp import MLP, MLPClassifier, _memory

SETTINGS = {"adam": dict(solver="adam"), "sgd, batch 500": dict(solver="sgd", batch_size=500),
            "lbfgs": dict(solver="lbfgs"), "early stopping": dict(early_stopping=True)}


def _data(dtype):
    rng = np.random.default_rng(0)
    return rng.normal(size=(2000, 20)).astype(dtype), rng.integers(0, 3, 2000)


def _peak(call):
    """The most bytes NumPy held at once during call() beyond what it held before."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("setting", SETTINGS)
def test_the_estimate_is_a_lower_bound_of_what_a_fit_allocates(backend, dtype, setting):
    X, y = _data(dtype)
    est = MLPClassifier((300, 200), max_iter=2, random_state=0, backend=backend,
                        **SETTINGS[setting])
    units = [20, 300, 200, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[:50], y[:50])  # compiled (numba) and fitted: the refit below keeps a model
        for first_pass in (True, False):
            if not first_pass:
                est.set_params(warm_start=True)
            need, _ = est._memory_needed(units, X, first_pass)
            peak = _peak(lambda: est.fit(X, y))
            assert need <= peak <= 4 * need, (first_pass, need, peak)


def test_a_fit_beyond_the_memory_left_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: 100 << 20)
    X, y = _data(np.float64)
    est = MLPClassifier((100_000,), random_state=0)  # 200 rows × 100 000 units × 2 × 8 bytes
    peak = _peak(lambda: pytest.raises(MemoryError, est.fit, X[:300], y[:300]))
    assert peak < 1 << 20
    with pytest.raises(MemoryError, match=r"this fit \(layers \[20, 100000, 3\], 200 rows a "
                                          r"step\) needs at least 4\d\d\.\d MB, and this "
                                          r"process may allocate 104\.9 MB more"):
        est.fit(X[:300], y[:300])
    est.set_params(hidden_layer_sizes=(100,), max_iter=2)  # what fits is fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[:300], y[:300])


def test_a_network_beyond_the_memory_left_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: 100 << 20)
    peak = _peak(lambda: pytest.raises(MemoryError, MLP, [4, 2_000_000, 3], dtype=np.float32))
    assert peak < 1 << 20
    with pytest.raises(MemoryError, match=r"a network of layers \[4, 2000000, 3\] needs at "
                                          r"least .* Use fewer or narrower hidden layers"):
        MLP([4, 2_000_000, 3], dtype=np.float32)
    MLP([4, 1000, 3])


THE_ISSUES_NETWORK = r"""
import resource, time
import numpy as np
from sklearn.datasets import load_iris
import fastmlp
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a broken check fails, not swaps
X, y = load_iris(return_X_y=True)
fastmlp.MLPClassifier((5,), max_iter=1).fit(X, y)  # imports, kernels loaded or compiled
fastmlp.MLP([4, 5, 3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for make in (lambda: fastmlp.MLPClassifier(hidden_layer_sizes=(300_000_000,)).fit(X, y),
             lambda: fastmlp.MLP([4, 300_000_000, 3])):
    start = time.perf_counter()
    try:
        make()
        print("allocated")
    except MemoryError as error:
        print(str(error).split(" needs")[0], time.perf_counter() - start < 1)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # kB
print(grown < 50_000)  # the refusals allocated nothing (a broken check: gigabytes)
"""


@pytest.mark.process
def test_the_issues_network_of_300_million_units_is_refused_at_once():
    """hidden_layer_sizes=(300_000_000,) once grew a process to 9 GB before the kernel killed
    it: now a MemoryError within a second, nothing allocated."""
    done = subprocess.run([sys.executable, "-c", THE_ISSUES_NETWORK], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "this fit (layers [4, 300000000, 3], 150 rows a step) True",
        "a network of layers [4, 300000000, 3] True", "True"]
