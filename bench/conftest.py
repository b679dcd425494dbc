"""pytest-benchmark suite. Not collected by the plain `pytest` (testpaths = tests).

Run: pytest bench/ --benchmark-only            (full timings)
     pytest bench/ --benchmark-disable         (smoke: every benchmark once, results checked)
"""
import numpy as np
import pytest

from fastmlp import available_backends

BACKENDS = available_backends()
DTYPES = [np.float32, np.float64]


def dtype_id(dtype):
    return np.dtype(dtype).name


@pytest.fixture(autouse=True)
def _seeded():
    np.random.seed(0)
