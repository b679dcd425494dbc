"""Process-wide settings: compiler flags for the kernels, thread limits."""
import contextlib
import os
import threading

#: fastmath would let LLVM drop NaN/inf checks and reassociate sums; off unless proven harmless.
FASTMATH = False

#: The compiled backends split a minibatch across threads (each thread its own rows and
#: gradient buffer, single-threaded BLAS) when every thread gets at least CHUNK_MIN_ROWS rows
#: and the minibatch's forward GEMMs total at most CHUNK_MAX_WORK multiply-adds. Measured by
#: `python bench/data_parallel.py --rounds 9` (two runs): split, digits-sized steps
#: (200 x 64-100-10, 1.5M) ran 1.1-2.1x faster; MNIST-shaped (18M) 1.2-1.9x (cython),
#: 1.0-1.45x (numba); W3 (30M) 0.97-1.26x, about even: BLAS's own threads use both cores well
#: from there on.
CHUNK_MIN_ROWS = 32
CHUNK_MAX_WORK = 20_000_000


def data_parallel_chunks(arch, batch_size, n_threads):
    """How many threads a compiled backend's minibatch step should be split across."""
    work = batch_size * sum(a * b for a, b in zip(arch.layer_sizes[:-1], arch.layer_sizes[1:]))
    if n_threads > 1 and batch_size >= 2 * CHUNK_MIN_ROWS and work <= CHUNK_MAX_WORK:
        return n_threads
    return 1


_controller = None
_active = threading.local()


def _blas_controller():
    """One ThreadpoolController for the process: building one inspects every loaded library."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def thread_limit(n_threads):
    """Limit BLAS (threadpoolctl) and Numba threads to n_threads; None leaves them alone.

    Re-entrant: inside a limit of the same size (an estimator's fit around its epochs) it
    does nothing, so the per-epoch cost is nil.
    """
    if n_threads is None or getattr(_active, "limit", None) == n_threads:
        yield
        return
    n_threads = check_n_threads(n_threads)
    numba_threads = _numba_threads()
    previous = numba_threads.get_num_threads() if numba_threads else None
    outer, _active.limit = getattr(_active, "limit", None), n_threads
    with _blas_controller().limit(limits=n_threads, user_api="blas"):
        if numba_threads:
            numba_threads.set_num_threads(min(n_threads, numba_threads.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            _active.limit = outer
            if numba_threads:
                numba_threads.set_num_threads(previous)


def current_thread_limit():
    """The n_threads of the innermost active thread_limit in this thread, or None."""
    return getattr(_active, "limit", None)


def blas_thread_limit(n_threads):
    """Context manager limiting only BLAS threads (the cached controller makes it cheap)."""
    return _blas_controller().limit(limits=n_threads, user_api="blas")


def check_n_threads(n_threads):
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or int(n_threads) != n_threads or n_threads < 1:
        raise ValueError(f"n_threads must be None or an integer >= 1, got {n_threads!r}")
    return int(n_threads)


def _numba_threads():
    import sys

    return sys.modules.get("numba")


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
