"""scikit-learn's own MLP tests, run against fastmlp's estimators once per backend.

The `test_mlp.py` installed with scikit-learn is read, its one import of the estimators is
rewritten to fastmlp's, and its tests are executed into this module, so pytest collects
them here with their parametrisations; scikit-learn's `global_random_seed` parametrisation
comes from its conftest's hook. Every test runs under `fastmlp.config_context(backend=...)`
for each available backend.

A test is left out only when it reads a private attribute of scikit-learn's estimator that a
drop-in need not have; DESELECTED names each with its reason and the fastmlp test that
covers the same behaviour.
"""
import importlib.util
from pathlib import Path

import pytest
from sklearn.conftest import pytest_generate_tests  # noqa: F401  (global_random_seed)

import fastmlp

ORIGINAL_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
FASTMLP_IMPORT = "from fastmlp import MLPClassifier, MLPRegressor"

DESELECTED = {
    "test_gradient": "calls scikit-learn's private _loss_grad_lbfgs; covered by "
                     "tests/test_sklearn_semantics.py::test_gradient_matches_finite_differences",
    "test_learning_rate_warmstart": "reads scikit-learn's private _optimizer.learning_rate; "
                                    "covered by tests/test_sklearn_semantics.py::"
                                    "test_invscaling_rate_continues_across_warm_starts",
    "test_adaptive_learning_rate": "reads scikit-learn's private _optimizer.learning_rate; "
                                   "covered by tests/test_sklearn_semantics.py::"
                                   "test_adaptive_rate_falls_below_its_floor_before_stopping",
}


def _suite_source():
    spec = importlib.util.find_spec("sklearn.neural_network.tests.test_mlp")
    path = Path(spec.origin)
    source = path.read_text()
    if source.count(ORIGINAL_IMPORT) != 1:
        raise RuntimeError(f"{path} no longer imports the estimators as {ORIGINAL_IMPORT!r}; "
                           "update tests/test_sklearn_suite.py")
    return path, source.replace(ORIGINAL_IMPORT, FASTMLP_IMPORT)


_path, _source = _suite_source()
exec(compile(_source, str(_path), "exec"), globals())
for _name in DESELECTED:
    if _name not in globals():
        raise RuntimeError(f"scikit-learn's test_mlp.py has no {_name} any more")
    del globals()[_name]
assert MLPClassifier is fastmlp.MLPClassifier and MLPRegressor is fastmlp.MLPRegressor  # noqa: F821


@pytest.fixture(autouse=True, params=fastmlp.available_backends())
def _backend(request):
    with fastmlp.config_context(backend=request.param):
        yield request.param
