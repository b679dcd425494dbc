"""The suite's shared fixtures and its tiers.

Tiers (markers, declared in pyproject.toml): a test that starts a Python child process is
``process``, one that builds the extension or a wheel ``build``, one that allocates
gigabytes or runs for long ``slow``. The README's plain ``pytest`` runs the rest — unit
tests, every backend against the reference, scikit-learn's estimator checks and its own MLP
test file — and ``pytest -m "process or build or slow"`` (CI) runs these; ``pytest -m ""``
runs everything. A test of the fast tier that starts a process fails and says to mark it.
``FASTMLP_FULL_PRODUCTS=1`` runs the full products of the layer-kernel tests, where the fast
tier runs crossings that reach the same code paths.

The suite's fits use the default thread count whatever else runs on the machine: a thread
count that followed the load (fastmlp.set_config(adaptive_threads=...)) would make a large
network's BLAS-threaded sums, and so bitwise comparisons, depend on it. test_threads.py
turns the adaptation on where it is under test.
"""
import os
import subprocess
import sys

os.environ.setdefault("FASTMLP_ADAPTIVE_THREADS", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import BACKENDS, COMPILED, DTYPES  # noqa: E402

SLOW_TIERS = ("process", "build", "slow")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each available backend's name: "numpy" (the reference), "numba", "cython"."""
    return request.param


@pytest.fixture(params=COMPILED)
def compiled_backend(request):
    """Each available compiled backend's name."""
    return request.param


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _processes_only_in_their_tier(request, monkeypatch):
    """The fast tier starts no Python process (each pays for importing fastmlp, and numba's
    kernels): a test that does belongs to the `process` tier. Other programs a library runs
    (Dask asks `uname`) are let through."""
    if any(request.node.get_closest_marker(m) for m in SLOW_TIERS):
        return
    popen_init = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kwargs):
        program = args if isinstance(args, (str, bytes, os.PathLike)) else args[0]
        if os.path.basename(os.fsdecode(program)).startswith("python") or os.fsdecode(
                program) == sys.executable:
            raise AssertionError(f"{request.node.nodeid} starts a Python process: mark it "
                                 "@pytest.mark.process (tests/conftest.py)")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
