# What the compiled extension was built with: proves the build chain and feeds show_config().
cdef extern from *:
    """
    #if FASTMLP_OPENMP
    #include <omp.h>
    static int fastmlp_openmp_enabled(void) { return 1; }
    static int fastmlp_openmp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastmlp_openmp_enabled(void) { return 0; }
    static int fastmlp_openmp_max_threads(void) { return 1; }
    #endif
    static int fastmlp_libmvec_enabled(void) { return FASTMLP_LIBMVEC; }
    static int fastmlp_native(void) { return FASTMLP_NATIVE; }
    static int fastmlp_phase_timers_enabled(void) {
        return FASTMLP_PHASE_TIMERS && FASTMLP_OPENMP;
    }
    """
    int fastmlp_libmvec_enabled() nogil
    int fastmlp_native() nogil
    int fastmlp_phase_timers_enabled() nogil
    int fastmlp_openmp_enabled() nogil
    int fastmlp_openmp_max_threads() nogil


def openmp_enabled():
    """True when the compiled extensions were built with OpenMP."""
    return bool(fastmlp_openmp_enabled())


def openmp_max_threads():
    """OpenMP's default thread count (1 when built without OpenMP)."""
    return fastmlp_openmp_max_threads()


def libmvec_enabled():
    """True when the kernels' exp loops were vectorised through glibc's libmvec."""
    return bool(fastmlp_libmvec_enabled())


def phase_timers_enabled():
    """True when built with FASTMLP_PHASE_TIMERS=1 (and OpenMP): the cython kernel then times
    its phases (fastmlp._cython_kernels.phase_times, read by bench/phases.py)."""
    return bool(fastmlp_phase_timers_enabled())


def native():
    """True when built with -march=native (for the building machine's CPU only); False for a
    portable build (a wheel, or FASTMLP_PORTABLE=1)."""
    return bool(fastmlp_native())
