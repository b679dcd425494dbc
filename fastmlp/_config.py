"""Process-wide settings: compiler flags for the kernels, thread limits."""
import contextlib
import os
import sys
import threading

#: fastmath would let LLVM drop NaN/inf checks and reassociate sums; off unless proven harmless.
FASTMATH = False


_controller = None
_local = threading.local()  # this thread's active n_threads limits, innermost last


def _blas_controller():
    """One ThreadpoolController for the process: building one inspects every loaded library."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


class _BlasLimit:
    """The process-wide BLAS thread limit, shared by every thread that asks for one.

    BLAS's thread count belongs to the process, not to a thread: two fits in two threads
    that each set it and put back what they found leave it wrong when they end out of order.
    Here every request is counted; while any is active BLAS runs at the smallest of them (the
    most cautious: a split minibatch asks for 1 and must get 1, whatever runs beside it), and
    the last one out restores the limits found before the first.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active = []      # the n_threads of every request in force, in any thread
        self._original = None  # the BLAS libraries' limits before the first request
        self._applied = None

    @contextlib.contextmanager
    def __call__(self, n_threads):
        with self._lock:
            if not self._active:
                self._original = _blas_controller().select(user_api="blas")
                self._original_limits = [lib.num_threads for lib in self._original.lib_controllers]
            self._active.append(n_threads)
            self._apply(min(self._active))
        try:
            yield
        finally:
            with self._lock:
                self._active.remove(n_threads)
                if self._active:
                    self._apply(min(self._active))
                else:
                    for lib, limit in zip(self._original.lib_controllers, self._original_limits):
                        _set_threads(lib, limit)
                    self._applied = None

    def _apply(self, limit):
        if limit != self._applied:
            for lib in self._original.lib_controllers:
                _set_threads(lib, limit)
            self._applied = limit


def _set_threads(lib, n_threads):
    """lib.set_num_threads from whichever thread holds the lock. threadpoolctl lets only one
    "controlling" thread set OpenBLAS's process-wide pool and ignores the others; here the
    counting above decides, so the control is taken for the call and given back after it."""
    release = getattr(type(lib), "clear_controlling_thread", None)
    if release is not None:
        release(force=True)
    lib.set_num_threads(n_threads)
    if release is not None:
        release(force=True)


blas_thread_limit = _BlasLimit()
blas_thread_limit.__doc__ = """Context manager: BLAS at most n_threads threads while it is
active (process-wide, reference-counted: see _BlasLimit)."""


@contextlib.contextmanager
def thread_limit(n_threads):
    """Limit BLAS (process-wide, reference-counted) and Numba and the cython kernels' threads
    (in this thread) to n_threads; None leaves them alone."""
    if n_threads is None:
        yield
        return
    n_threads = check_n_threads(n_threads)
    numba = sys.modules.get("numba")  # only if imported already (importing it is slow)
    previous = numba.get_num_threads() if numba else None
    stack = getattr(_local, "limits", None)
    if stack is None:
        stack = _local.limits = []
    stack.append(n_threads)
    try:
        with blas_thread_limit(n_threads):
            if numba:  # thread-local in numba
                numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
            try:
                yield
            finally:
                if numba:
                    numba.set_num_threads(previous)
    finally:
        stack.pop()


def current_thread_limit():
    """The n_threads of the innermost active thread_limit in this thread, or None."""
    stack = getattr(_local, "limits", None)
    return stack[-1] if stack else None


def check_n_threads(n_threads):
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or int(n_threads) != n_threads or n_threads < 1:
        raise ValueError(f"n_threads must be None or an integer >= 1, got {n_threads!r}")
    return int(n_threads)


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
