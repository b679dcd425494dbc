"""The backend registry: one kernel contract (_backend.Backend), interchangeable backends.

Every backend is a `Backend`: a name, its kernels on checked arguments (`unchecked`, a
`Kernels`), and the contract's public functions, writing into caller-provided buffers:

    forward_layer(A_in, W, b, activation, out, leaky_slope=0.01)
    backward_layer(A_in, delta, W, grad_W, grad_b, delta_in=None, activation_in=None, leaky_slope=0.01)
    output_delta(A_out, Y, activation, loss, delta, sample_weight=None, leaky_slope=0.01)
    summed_gradient(arch, theta, X, Y, sample_weight, rows, grad, scratch=None) -> Σ loss
        one minibatch's forward and backward passes over rows `rows` of X, read where they
        are: the gradient summed over them into grad (a Dask shard's share of a step)
    train_epochs(arch, theta, X, Y, sample_weight, orders, batch_size, opt, state,
                 learning_rates, guard=True, plateau=None)
        -> (per-epoch sums (k, 2), "completed" | "plateau" | "diverged")
        many epochs in one call (one compiled call for numba and cython), with
        scikit-learn's loss-plateau rule (fastmlp.stopping.Plateau) and the divergence
        guard applied between epochs inside it

These check every argument before any kernel runs; MLP validates at its own edge, then calls
`unchecked`. Models resolve a backend once with `get_backend`; nowhere else branches on its
name.
"""
from __future__ import annotations

import importlib

from ..settings import BACKEND_NAMES, configured_backend
from ._backend import Backend, Kernels

__all__ = ["BACKEND_NAMES", "Backend", "Kernels", "available_backends", "get_backend"]

# name -> the module holding its `backend`, in order of preference for "auto" (fastest first).
_MODULES = {
    "numpy": "fastmlp.backends.reference",
    "numba": "fastmlp.backends.numba_backend",
    "cython": "fastmlp.backends.cython_backend",
}
# "auto" takes the first available. cython first: it needs no JIT warm-up (numba's first
# fit in a fresh process compiles its kernels: python -m bench.cold_start) and it is ahead of
# numba on the small workloads and the digits fit, level on the GEMM-bound ones
# (`python -m bench`, docs/performance.md).
_AUTO_ORDER = ("cython", "numba", "numpy")
assert tuple(_MODULES) == BACKEND_NAMES, "settings.BACKEND_NAMES names every backend"
_loaded = {}
_errors = {}


def _load(name):
    if name not in _loaded and name not in _errors:
        try:
            _loaded[name] = importlib.import_module(_MODULES[name])
        except ImportError as exc:  # a compiled backend whose toolchain is missing
            _errors[name] = exc
    return _loaded.get(name)


def available_backends() -> list[str]:
    """Name the backends that import on this machine.

    Returns
    -------
    names : list of str
        The available backends, fastest first.
    """
    return [name for name in _AUTO_ORDER if _load(name) is not None]


def get_backend(name: str | Backend = "auto") -> Backend:
    """Return the backend called `name`.

    Parameters
    ----------
    name : str or Backend, default="auto"
        "cython", "numba", "numpy", or "auto": what `fastmlp.set_config(backend=...)` or the
        FASTMLP_BACKEND environment variable set, by default the fastest available backend.
        A Backend is returned as it is.

    Returns
    -------
    backend : Backend
        The backend: its kernel contract's functions, checked, and its `unchecked` kernels.

    Raises
    ------
    ValueError
        For an unknown name.
    ImportError
        For a backend this machine cannot load (the message says why).
    """
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name, got {type(name).__name__}")
    # "auto": the first that imports; the others are not imported (importing numba costs a
    # visible fraction of a second: python -X importtime -c "import numba")
    if name == "auto":
        name = configured_backend()
    if name == "auto":
        return next(module for module in map(_load, _AUTO_ORDER) if module is not None).backend
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; expected 'auto' or one of {list(_MODULES)}")
    module = _load(name)
    if module is None:
        raise ImportError(f"backend {name!r} is not available here: {_errors[name]}")
    return module.backend
