"""MLPClassifier.fit of fastmlp against scikit-learn's, on digits and an MNIST-shaped problem.

digits uses scikit-learn's default hyperparameters; mnist-shaped (60k x 784, 784-100-100-10,
adam, batch 200) times 2 epochs. Each fastmlp fit is checked to reach scikit-learn's test
accuracy minus one point (on digits), so a fast wrong fit fails here.
"""
import warnings

import pytest
from bench.harness import DTYPES, dtype_id
from sklearn.exceptions import ConvergenceWarning

from bench import harness as B

PROBLEMS = {"digits": (B.digits_problem, dict(random_state=0)),
            "mnist-shaped": (B.mnist_shaped_problem,
                             dict(hidden_layer_sizes=(100, 100), batch_size=200, max_iter=2,
                                  random_state=0))}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("contender", list(B.fit_contenders({})))
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_fit(benchmark, problem, contender, dtype):
    load, params = PROBLEMS[problem]
    if problem == "mnist-shaped" and benchmark.disabled:
        params = dict(params, max_iter=1)
    X_train, X_test, y_train, y_test = load(dtype)
    if problem == "mnist-shaped" and benchmark.disabled:  # smoke mode: a slice is enough
        X_train, y_train = X_train[:4000], y_train[:4000]
    make = B.fit_contenders(params)[contender]
    benchmark.group = f"fit-{problem}-{dtype_id(dtype)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        make().set_params(max_iter=1).fit(X_train[:250], y_train[:250])  # warm-up / JIT
        est = benchmark.pedantic(lambda: make().fit(X_train, y_train), rounds=3, iterations=1)
        if problem == "digits" and contender != "sklearn":
            reference = B.fit_contenders(params)["sklearn"]().fit(X_train, y_train)
            assert est.score(X_test, y_test) >= reference.score(X_test, y_test) - 0.01
    benchmark.extra_info["test_score"] = est.score(X_test, y_test)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_digits_fit_jax_scan(benchmark, dtype):
    """JAX's 200 adam epochs of the digits fit in one compiled call (bench/jax_peer.py),
    the compile apart; it must score as scikit-learn's fit does (within a point)."""
    from bench import jax_peer

    if not jax_peer.available():
        pytest.skip("JAX is not installed (pip install 'jax[cpu]' to compare)")
    X_train, X_test, y_train, y_test = B.digits_problem(dtype)
    epochs = 20 if benchmark.disabled else 200
    fit = jax_peer.DigitsFit(X_train, y_train, dtype, epochs=epochs)
    benchmark.group = f"fit-digits-{dtype_id(dtype)}"
    benchmark.extra_info["compile_s"] = fit.compile_seconds
    benchmark.pedantic(fit.fit, rounds=3, iterations=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = B.fit_contenders(dict(random_state=0, max_iter=epochs))["sklearn"]()
        reference.fit(X_train, y_train)
    assert fit.score(X_test, y_test) >= reference.score(X_test, y_test) - 0.01


#: problem -> the fit's layers, minibatch and epochs, for its GEMM floors.
FLOOR_SHAPES = {"digits": ((64, 100, 10), 200, 200), "mnist-shaped": ((784, 100, 100, 10), 200, 2)}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("floor", B.FIT_FLOORS)
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_fit_floor(benchmark, problem, floor, dtype):
    """The fit's GEMMs alone, beside its fits in the same group (benchmarking.fit_floors)."""
    layers, batch, epochs = FLOOR_SHAPES[problem]
    X_train = PROBLEMS[problem][0](dtype)[0]
    if benchmark.disabled:  # smoke mode: an epoch of a slice is enough
        X_train, epochs = X_train[:4000], 1
    make = B.fit_floors(layers, batch, epochs, X_train)[floor]
    make().fit(X_train, None)  # warm-up: first-touch pages, BLAS threads
    benchmark.group = f"fit-{problem}-{dtype_id(dtype)}"
    est = benchmark.pedantic(lambda: make().fit(X_train, None), rounds=3, iterations=1)
    assert est.n_iter_ == epochs
