"""pytest-benchmark suite. Not collected by the plain `pytest` (testpaths = tests).

Run: pytest bench/ --benchmark-only            (full timings)
     pytest bench/ --benchmark-disable         (smoke: every benchmark once, results checked)
"""
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seeded():
    np.random.seed(0)
