"""Process-wide settings: compiler flags for the kernels, thread limits."""
import contextlib
import os
import threading

#: fastmath would let LLVM drop NaN/inf checks and reassociate sums; off unless proven harmless.
FASTMATH = False


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
