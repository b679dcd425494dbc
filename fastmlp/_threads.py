"""Threads: how many a call may use (n_threads, thread limits, BLAS's and the kernels'), the
team the machine has free now (_cpu_load), and what a forked child may use."""
import contextlib
import functools
import os
import sys
import threading
from numbers import Integral

from . import _cpu_load

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


_NO_LIMIT = contextlib.nullcontext()


def thread_limit(n_threads):
    """Limit BLAS (process-wide, reference-counted) and Numba and the cython kernels' threads
    (in this thread) to n_threads; None leaves them alone (and costs nothing: a small call's
    budget is microseconds)."""
    return _NO_LIMIT if n_threads is None else _thread_limit(n_threads)


@contextlib.contextmanager
def _thread_limit(n_threads):
    n_threads = resolve_n_threads(n_threads)
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


def team_threads(n_threads):
    """The threads a compiled call runs for a count of n_threads: all of them when the fit
    set n_threads (a thread_limit is active) or adaptive_threads is off (fastmlp.set_config),
    else no more than other processes left free lately (_cpu_load), so a busy machine does
    not stall a team at its barriers."""
    from .settings import adaptive_threads

    if n_threads <= 1 or current_thread_limit() is not None or not adaptive_threads():
        return n_threads
    return _cpu_load.team_size(n_threads, cpu_count())


def current_thread_limit():
    """The n_threads of the innermost active thread_limit in this thread, or None."""
    stack = getattr(_local, "limits", None)
    return stack[-1] if stack else None


def check_n_threads(n_threads):
    """n_threads as given, validated: None, or a non-zero integer (negative: counted back
    from the CPU count, as scikit-learn's n_jobs)."""
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, Integral) or n_threads == 0:
        raise ValueError("n_threads must be None or a non-zero integer (-1: every CPU, -2: "
                         f"all but one, ...), got {n_threads!r}")
    return int(n_threads)


def resolve_n_threads(n_threads):
    """The thread count a fit runs with: n_threads (checked) capped at the CPUs this process
    may use, a negative count taken from there (-1: all of them); at least 1."""
    n_threads = check_n_threads(n_threads)
    if n_threads is None:
        return None
    cpus = cpu_count()
    return max(1, min(n_threads, cpus) if n_threads > 0 else cpus + 1 + n_threads)


@functools.lru_cache(maxsize=1)
def cpu_count():
    """The CPUs this process may use: its affinity mask and its cgroup's CPU quota (joblib's
    count, which reads both); cached, recounted in a forked child."""
    import joblib

    return max(1, joblib.cpu_count())


def default_threads(library_default):
    """A compiled backend's thread count when no n_threads is set: its library's default
    (OMP_NUM_THREADS, NUMBA_NUM_THREADS) capped at cpu_count(); 1 in a child forked from a
    process whose thread teams cannot be carried across fork (see run_parallel)."""
    if _forked_after_teams:
        return 1
    return max(1, min(library_default, cpu_count()))


# -- fork ------------------------------------------------------------------------------------
# GNU OpenMP's (and Numba's OpenMP layer's) thread team does not survive fork(): a child that
# enters a parallel region after its parent ran one hangs or is terminated. So the parent
# notes when it first runs a team, and a child forked after that trains on one thread — the
# weights those of the same fit with n_threads=1. BLAS (OpenBLAS) re-creates its own threads.
_teams_started = False
_forked_after_teams = False


def teams_start():
    """Called before a compiled call runs a thread team (a split minibatch)."""
    global _teams_started
    _teams_started = True


def threads_for(n_threads):
    """The threads a compiled call may run: n_threads, or 1 in a child forked after a team."""
    return 1 if _forked_after_teams else n_threads


def _after_fork_in_child():
    global _forked_after_teams
    _forked_after_teams = _forked_after_teams or _teams_started
    cpu_count.cache_clear()
    # a lock another thread of the parent held stays held in the child: start afresh
    blas_thread_limit._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
