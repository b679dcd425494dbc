"""The numba backend: the kernels of _numba_kernels.py as a Backend (`backend`).

The kernels are compiled at first use and cached on disk; this module only says how they
run threads (Numba's own thread count, BLAS single-threaded inside a split minibatch) and
hands them to _compiled.py, which the cython backend shares.
"""
import contextlib
import threading

import numba

from .._threads import blas_thread_limit, current_thread_limit, default_threads, threads_for
from . import _compiled
from . import _numba_kernels as _nk
from ._backend import Backend

name = "numba"

# Numba's "workqueue" threading layer (the fallback when neither OpenMP nor TBB is present)
# aborts the process if two threads enter parallel code at once; there, parallel epochs
# take turns. The OpenMP and TBB layers are thread-safe and need no lock.
_WORKQUEUE_LOCK = threading.Lock()


def _parallel_guard():
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel code has run yet: the layer is not chosen
        layer = None
    return _WORKQUEUE_LOCK if layer in (None, "workqueue") else contextlib.nullcontext()


@contextlib.contextmanager
def _numba_threads(n):
    """Numba's thread count (thread-local) at n for the call, then as it was."""
    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _split_threads(n_chunks, team):
    """A split minibatch: its chunks run on `team` threads, each calling BLAS single-threaded
    (two levels of threading would oversubscribe the cores); the workqueue layer needs its
    lock."""
    if n_chunks == 1:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(_parallel_guard())
    stack.enter_context(blas_thread_limit(1))
    if team < numba.get_num_threads():
        stack.enter_context(_numba_threads(team))
    return stack


def _n_threads():
    """Numba's thread count in this thread (fastmlp's thread_limit sets it), as
    fastmlp._threads allows it (the default capped at the CPUs; 1 in a forked child)."""
    n = numba.get_num_threads()
    return threads_for(n) if current_thread_limit() is not None else default_threads(n)


backend = Backend(name, _compiled.CompiledKernels(
    _compiled.RawKernels(_nk._forward, _nk._backward, _nk._sparse_forward, _nk._sparse_gradient,
                         _nk._output_delta, _nk.train_epochs, _nk.predict, _nk.summed_gradient),
    _split_threads, _n_threads, read_only_inputs=True))
