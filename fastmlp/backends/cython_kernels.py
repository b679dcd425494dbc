"""The Cython backend: a thin typed wrapper over the compiled extension fastmlp._cython_kernels.

The kernels (csrc/_cython_kernels.pyx) are compiled at install time: no JIT warm-up, the GIL
released for the whole epoch, OpenMP threads for the data-parallel minibatch, BLAS from
scipy.linalg.cython_blas. This module only checks arguments (backends/_contract.py) before
handing them to code compiled without bounds checks (backends/_compiled.py, shared with numba).
"""
import contextlib

from .. import _cython_kernels as _ck
from .._config import blas_thread_limit, current_thread_limit
from . import _compiled

name = "cython"

forward_layer, backward_layer, output_delta = _compiled.contract_functions(
    _ck.forward_layer, _ck.backward_layer, _ck.output_delta)


def _threads(n_chunks):
    """A split minibatch: OpenMP threads each call BLAS single-threaded."""
    return blas_thread_limit(1) if n_chunks > 1 else contextlib.nullcontext()


def _n_threads():
    """n_threads when a thread limit is active, else OpenMP's default."""
    limit = current_thread_limit()
    return max(1, limit if limit is not None else _ck.max_threads())


def train_epochs(arch, theta, X, Y, sample_weight, orders, batch_size, opt, state,
                 learning_rates, guard=True, plateau=None):
    """Up to len(learning_rates) epochs in one nogil compiled call. Mirrors
    reference.train_epochs."""
    return _compiled.train_epochs(_ck.train_epochs, _threads, arch, theta, X, Y, sample_weight,
                                  orders, batch_size, opt, state, learning_rates, guard, plateau,
                                  _n_threads())


def train_epoch(arch, theta, X, Y, sample_weight, order, batch_size, opt, state):
    """One epoch in one nogil compiled call. Mirrors reference.train_epoch."""
    return _compiled.train_epoch_from(_ck.train_epochs, _threads, arch, theta, X, Y,
                                      sample_weight, order, batch_size, opt, state, _n_threads())


__all__ = ["name", "forward_layer", "backward_layer", "output_delta", "train_epoch",
           "train_epochs"]
