"""Shared test helpers: the per-dtype tolerances (stated once) and problem generators."""
import os

import numpy as np

import fastmlp
from fastmlp.activations import HIDDEN_ACTIVATIONS
from fastmlp.losses import VALID_OUTPUTS

#: The installed backends (the reference first), and the compiled ones among them; the
#: fixtures `backend` and `compiled_backend` (conftest.py) take each in turn.
BACKENDS = ("numpy", *(b for b in ("cython", "numba") if b in fastmlp.available_backends()))
COMPILED = BACKENDS[1:]
DTYPES = (np.float32, np.float64)
#: The full products of the layer-kernel tests, instead of their crossings (conftest.py).
FULL_PRODUCTS = os.environ.get("FASTMLP_FULL_PRODUCTS", "") not in ("", "0")

#: Agreement between two implementations of the same maths (backend vs reference).
TOL = {
    np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}

#: Every (hidden activation, output activation, loss) combination the library accepts.
PAIRS = [(out, loss) for loss, outs in VALID_OUTPUTS.items() for out in outs]
COMBOS = [(hidden, out, loss) for hidden in HIDDEN_ACTIVATIONS for out, loss in PAIRS]


def tol(dtype, scale=1.0):
    t = TOL[np.dtype(dtype)]
    return dict(rtol=t["rtol"], atol=t["atol"] * scale)


def targets(rng, n, n_out, output_activation, loss, dtype=np.float64):
    """Targets that make sense for the loss: one-hot for softmax CE, [0, 1] for log losses,
    counts (zeros among them) for poisson."""
    if loss == "poisson":
        return rng.poisson(1.5, (n, n_out)).astype(dtype)
    if loss == "cross_entropy" and output_activation == "softmax":
        return np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, n)]
    if loss in ("cross_entropy", "binary_cross_entropy"):
        return rng.uniform(0, 1, (n, n_out)).astype(dtype)
    return rng.normal(0, 1, (n, n_out)).astype(dtype)


def problem(seed, n, sizes, output_activation="softmax", loss="cross_entropy", dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n, sizes[0])).astype(dtype)
    return X, targets(rng, n, sizes[-1], output_activation, loss, dtype)
