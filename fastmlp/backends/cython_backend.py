"""The cython backend: the kernels of _cython_kernels.pyx as a Backend (`backend`).

The kernels are compiled at install time: no JIT warm-up, the GIL released for the whole
call, one OpenMP team for a split minibatch, GEMMs from SciPy's or NumPy's BLAS (`blas`: as
_blas.py chose at import). This module only says how they run threads and which BLAS, and
hands them to _compiled.py, which the numba backend shares.
"""
import contextlib

from .._threads import blas_thread_limit, current_thread_limit, default_threads, threads_for
from . import _blas, _compiled
from . import _cython_kernels as _ck
from ._backend import Backend

name = "cython"
blas = _blas.choose()
_ck.use_ilp64_gemm(blas.sgemm, blas.dgemm)


def _split_threads(n_chunks, team):
    """A split minibatch: OpenMP threads (the kernel starts `team` of them) each call BLAS
    single-threaded."""
    return blas_thread_limit(1) if n_chunks > 1 else contextlib.nullcontext()


def _n_threads():
    """n_threads when a thread limit is active in this thread, else OpenMP's default (both
    as fastmlp._threads allows them: capped at the CPUs, 1 in a forked child)."""
    limit = current_thread_limit()
    return threads_for(limit) if limit is not None else default_threads(_ck.max_threads())


backend = Backend(name, _compiled.CompiledKernels(
    _compiled.RawKernels(_ck.forward_layer, _ck.backward_layer, _ck.sparse_forward_layer,
                         _ck.sparse_weight_gradient, _ck.output_delta, _ck.train_epochs,
                         _ck.predict, _ck.summed_gradient),
    _split_threads, _n_threads))
