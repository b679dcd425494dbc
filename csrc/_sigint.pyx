# cython: language_level=3
"""A C-level SIGINT handler that only raises a flag, for fastmlp.interrupts.

The compiled training loops run without the GIL, where Python's own handler cannot act until
they return. While this handler is installed (for the duration of a fit), Ctrl-C writes 1
into `flag` — the async-signal-safe whole of it — and the kernels, which read that flag
after every minibatch, end their call; Python then raises KeyboardInterrupt at a point where
the model's state is consistent. `restore()` puts back the handler found by `install()`
(Python's), so outside a fit Ctrl-C is Python's again.
"""
from libc.stdint cimport int64_t

import numpy as np

cdef extern from *:
    """
    #include <signal.h>
    #include <stdint.h>
    #include <string.h>
    #if defined(_MSC_VER)
    #define FASTMLP_RAISE(flag) (*(volatile int64_t*)(flag) = 1)
    #else
    #define FASTMLP_RAISE(flag) __atomic_store_n((flag), 1, __ATOMIC_RELEASE)
    #endif
    /* On a cache line of its own: the kernels' threads poll it, nothing else lives there. */
    static int64_t fastmlp_sigint_flag[8] __attribute__((aligned(64)));
    #ifdef _WIN32
    typedef void (*fastmlp_handler)(int);
    static fastmlp_handler fastmlp_sigint_previous;
    static void fastmlp_sigint_handler(int sig) {
        FASTMLP_RAISE(&fastmlp_sigint_flag[0]);
        signal(sig, fastmlp_sigint_handler);  /* Windows resets the handler on delivery */
    }
    static int fastmlp_sigint_install(void) {
        fastmlp_sigint_previous = signal(SIGINT, fastmlp_sigint_handler);
        return fastmlp_sigint_previous == SIG_ERR ? -1 : 0;
    }
    static int fastmlp_sigint_restore(void) {
        return signal(SIGINT, fastmlp_sigint_previous) == SIG_ERR ? -1 : 0;
    }
    #else
    static struct sigaction fastmlp_sigint_previous;
    static void fastmlp_sigint_handler(int sig) {
        (void)sig;
        FASTMLP_RAISE(&fastmlp_sigint_flag[0]);
    }
    static int fastmlp_sigint_install(void) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = fastmlp_sigint_handler;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;  /* no EINTR in the BLAS or OpenMP waits it lands in */
        return sigaction(SIGINT, &action, &fastmlp_sigint_previous);
    }
    static int fastmlp_sigint_restore(void) {
        return sigaction(SIGINT, &fastmlp_sigint_previous, NULL);
    }
    #endif
    """
    int64_t fastmlp_sigint_flag[8]
    int fastmlp_sigint_install() nogil
    int fastmlp_sigint_restore() nogil

#: The flag the handler raises: an int64 array of one element over the C variable.
flag = np.asarray(<int64_t[:1]> &fastmlp_sigint_flag[0])


def install():
    """Route SIGINT to the flag (OSError if the system refuses)."""
    if fastmlp_sigint_install() != 0:
        raise OSError("sigaction(SIGINT) failed")


def restore():
    """Put back the SIGINT handler install() found."""
    if fastmlp_sigint_restore() != 0:
        raise OSError("sigaction(SIGINT) failed")
