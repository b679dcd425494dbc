"""Fits beside a CPU-bound neighbour process (bench/contention.py): default threads,
n_threads=1 and scikit-learn, the neighbour started and stopped by the benchmark.

Under --benchmark-only the digits fit (scikit-learn's defaults) and the MNIST-shaped fit
(784-100-100-10, adam, batch 200, 2 epochs); in smoke mode (--benchmark-disable) the digits
fit for 20 epochs and a 6 000-row MNIST-shaped fit. Every fit must score as scikit-learn's
does, so a fast wrong fit fails here. `python -m bench --contention` reports the ratios, the
idle machine beside the busy one, each fit in a process of its own.
"""
import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkClassifier

import fastmlp
from bench import contention as C

CONTENDERS = [c for c in ("cython", "cython n_threads=1", "numba", "numba n_threads=1",
                          "sklearn") if C.CONTENDERS[c][1] in set(fastmlp.available_backends())
              | {None}]


@pytest.fixture(scope="module")
def neighbour():
    with C.Neighbour():
        yield


@pytest.mark.parametrize("problem", C.PROBLEMS)
@pytest.mark.parametrize("contender", CONTENDERS)
def test_fit_beside_a_busy_neighbour(benchmark, neighbour, contender, problem):
    import numpy as np

    smoke = benchmark.disabled
    (X_train, X_test, y_train, y_test), params = C._problem(problem, np.float64, quick=smoke)
    if smoke and problem == "digits":
        params = dict(params, max_iter=20)
    library, backend, n_threads, _ = C.CONTENDERS[contender]
    make = ((lambda: SkClassifier(**params)) if library == "sklearn" else
            (lambda: fastmlp.MLPClassifier(backend=backend, n_threads=n_threads, **params)))
    benchmark.group = f"busy-{problem}"
    with warnings.catch_warnings(), fastmlp.config_context(adaptive_threads=True):
        warnings.simplefilter("ignore", ConvergenceWarning)
        make().fit(X_train[:400], y_train[:400])  # JIT and first-touch, apart
        est = benchmark.pedantic(lambda: make().fit(X_train, y_train),
                                 rounds=1 if smoke else 3, iterations=1)
        reference = SkClassifier(**params).fit(X_train, y_train)
    assert est.score(X_test, y_test) >= reference.score(X_test, y_test) - 0.02


def test_the_contention_report_is_complete():
    """python -m bench --contention's machinery: both machines, the ratios, the table."""
    result = C.run(contenders=("cython", "cython n_threads=1", "sklearn"), problems=("digits",),
                   rounds=1, quick=True)
    rows = {(r["condition"], r["contender"]): r for r in result["summary"]}
    assert set(rows) == {(m, c) for m in ("idle", "busy")
                         for c in ("cython", "cython n_threads=1", "sklearn")}
    assert all(r["seconds"] > 0 and r["test_score"] > 0.9 for r in rows.values())
    assert rows[("busy", "cython n_threads=1")]["vs_one_thread"] == 1.0
    assert "/ n_threads=1" in C.text(result)
