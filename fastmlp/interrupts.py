"""Ctrl-C during training: the signal becomes a flag that the training loops read.

A compiled call runs without the GIL, where Python's SIGINT handler cannot act until it
returns; if it then raised KeyboardInterrupt wherever the interpreter happened to be, it
could land between the weights' update and the bookkeeping that describes it. So, for the
duration of a fit, `deferred()` routes SIGINT to a flag instead (a C handler in
fastmlp._sigint that only writes it): every backend reads the flag after each minibatch and
ends its call, the epoch under way undone; the trainer records what completed and only then
raises KeyboardInterrupt (Deferral.check), which scikit-learn's loop turns into its
"Training interrupted by user." warning.

This is done only where Python itself would raise KeyboardInterrupt: in the main thread,
while SIGINT's handler is Python's default one. Elsewhere — another thread, a custom handler,
the extension not built — the flag is never raised and signals stay Python's: the trainer's
calls return often enough (training's time budget) for it to act between them.
"""
import _signal
import signal
import threading

import numpy as np

try:
    from . import _sigint
except ImportError:  # extensions not built
    _sigint = None

_depth = 0  # nested deferrals in the main thread (only the outermost installs the handler)


class Deferral:
    """The stop flag of one deferral, for the backends (`flag`) and the trainer (`check`)."""

    def __init__(self, flag):
        self.flag = flag

    @property
    def requested(self):
        return bool(self.flag[0])

    def check(self):
        """Raise the deferred KeyboardInterrupt, if Ctrl-C came (the flag is then cleared)."""
        if self.flag[0]:
            self.flag[0] = 0
            raise KeyboardInterrupt


def _can_defer():
    # _signal.getsignal: signal.getsignal's own answer without its conversion to an enum,
    # which for a function handler is a raised and caught ValueError at every call
    return (_sigint is not None and threading.current_thread() is threading.main_thread()
            and _signal.getsignal(signal.SIGINT) is signal.default_int_handler)


class deferred:
    """SIGINT raises the yielded Deferral's flag instead of KeyboardInterrupt while inside.
    A Ctrl-C not consumed by check() by the end is raised as KeyboardInterrupt on leaving.
    (A class, not a generator: a small training call's budget is microseconds.)"""

    def __enter__(self):
        global _depth
        self.installs = False
        if not (_depth or _can_defer()):
            self.deferral = Deferral(np.zeros(1, np.int64))  # never raised: signals stay
            return self.deferral                              # Python's
        if _depth == 0:
            _sigint.flag[0] = 0
            _sigint.install()
        _depth += 1
        self.installs = True
        self.deferral = Deferral(_sigint.flag)
        return self.deferral

    def __exit__(self, kind, value, traceback):
        global _depth
        if self.installs:
            _depth -= 1
            if _depth == 0:
                _sigint.restore()
        if kind is None:
            self.deferral.check()  # only when nothing is raised already
        return False
