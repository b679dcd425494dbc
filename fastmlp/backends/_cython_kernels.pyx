# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""The cython twin's kernels: the reference kernel contract compiled ahead of time.

Twin of _numba_kernels.py: the functions both engines have carry the same name and say
which reference function they mirror; tests/test_twins.py fails when one engine has a kernel
or a constant the other lacks, unless it is on that test's engine-specific list with its
reason (what this twin fuses beyond numba's is listed there). The interface — records,
codes, size rules — is _layout.py's, declared for C in _records.pxd and checked against it
at import. GEMMs come from scipy.linalg.cython_blas (SciPy's BLAS) or NumPy's OpenBLAS, as
_blas.py chooses; everything else runs without the GIL, the whole epoch included. The
arrays reaching these functions have been checked by _checks.py (shapes, dtypes,
contiguity), so bounds checks are off.

Precision (both twins): activations, derivatives and δ round to θ's dtype at every
operation, as NumPy's arithmetic on θ does in the reference; losses accumulate in double
(numba's two exceptions: its module docstring).

Row-major products through column-major BLAS: a C-ordered (r, c) matrix is the
column-major (c, r) matrix of its transpose, so
    out = A @ W      is  gemm('N', 'N', n_out, n, n_in,  W, A)
    gW  = Aᵀ @ δ     is  gemm('N', 'T', n_out, n_in, n,  δ, A)
    δin = δ @ Wᵀ     is  gemm('T', 'N', n_in, n, n_out,  W, δ)
"""
from cython cimport floating
from cython.parallel cimport parallel
from libc.float cimport DBL_EPSILON, DBL_MAX as DOUBLE_MAX, DBL_MIN, FLT_EPSILON, FLT_MAX, FLT_MIN
from libc.math cimport exp, expf, fabs, fabsf, frexp, log, logf, sqrt, sqrtf, tanh, tanhf
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport ddot, dgemm, dgemv, sdot, sgemm, sgemv

import numpy as np

from ._records cimport *

cdef extern from *:
    """
    #if FASTMLP_LIBMVEC
    /* As glibc's math.h declares them under -ffast-math: callable on vectors, so gcc turns a
       loop of exp calls into calls of libmvec's AVX/AVX-512 exp (set by setup.py's probe). */
    float expf(float) __attribute__((simd("notinbranch")));
    double exp(double) __attribute__((simd("notinbranch")));
    float logf(float) __attribute__((simd("notinbranch")));
    double log(double) __attribute__((simd("notinbranch")));
    #endif
    """

cdef extern from *:
    """
    #if FASTMLP_OPENMP
    #include <omp.h>
    static int fastmlp_max_threads(void) { return omp_get_max_threads(); }
    /* Called inside a parallel region: the team's size, this thread's number, and a barrier
       (an orphaned directive binds to the enclosing region). */
    static int fastmlp_team_size(void) { return omp_get_num_threads(); }
    static int fastmlp_thread_num(void) { return omp_get_thread_num(); }
    static void fastmlp_barrier(void) {
    #pragma omp barrier
    }
    #else
    static int fastmlp_max_threads(void) { return 1; }
    static int fastmlp_team_size(void) { return 1; }
    static int fastmlp_thread_num(void) { return 0; }
    static void fastmlp_barrier(void) { }
    #endif
    """
    int fastmlp_max_threads() nogil
    int fastmlp_team_size() nogil
    int fastmlp_thread_num() nogil
    void fastmlp_barrier() nogil

cdef extern from *:
    """
    /* Phase timers (setup.py: FASTMLP_PHASE_TIMERS=1, with OpenMP): seconds per thread and
       phase, summed until read. Built without them, the calls below compile to nothing. */
    #if FASTMLP_PHASE_TIMERS && FASTMLP_OPENMP
    #define FASTMLP_TIMED_THREADS 64
    static double fastmlp_phase_total[FASTMLP_TIMED_THREADS][8] __attribute__((aligned(64)));
    static double fastmlp_clock(void) { return omp_get_wtime(); }
    static void fastmlp_phase_add(int phase, double since) {
        int tid = omp_get_thread_num();
        if (tid < FASTMLP_TIMED_THREADS)
            fastmlp_phase_total[tid][phase] += omp_get_wtime() - since;
    }
    static double fastmlp_phase_get(int tid, int phase) {
        return tid < FASTMLP_TIMED_THREADS ? fastmlp_phase_total[tid][phase] : 0.0;
    }
    static void fastmlp_phase_reset(void) {
        memset(fastmlp_phase_total, 0, sizeof fastmlp_phase_total);
    }
    #else
    static inline double fastmlp_clock(void) { return 0.0; }
    static inline void fastmlp_phase_add(int phase, double since) { (void)phase; (void)since; }
    static double fastmlp_phase_get(int tid, int phase) { (void)tid; (void)phase; return 0.0; }
    static void fastmlp_phase_reset(void) { }
    #endif
    """
    double fastmlp_clock() nogil
    void fastmlp_phase_add(int phase, double since) nogil
    double fastmlp_phase_get(int tid, int phase) nogil
    void fastmlp_phase_reset() nogil

cdef extern from *:
    """
    #include <stdint.h>
    #include <time.h>
    /* The stop flag (fastmlp.interrupts) is written by a signal handler: read it afresh at
       every check, never from a register. */
    static inline int64_t fastmlp_stop_requested(const int64_t* flag) {
    #if defined(_MSC_VER)
        return *(volatile const int64_t*)flag;
    #else
        return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
    #endif
    }
    /* Seconds on a monotonic clock, for the time budget (whatever the OpenMP build). */
    static inline double fastmlp_monotonic(void) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
    }
    """
    int64_t fastmlp_stop_requested(const int64_t* flag) nogil
    double fastmlp_monotonic() nogil

# The timed phases (PHASES below names them).
cdef enum:
    PHASE_GATHER = 0
    PHASE_FORWARD_BACKWARD = 1
    PHASE_GEMM = 2
    PHASE_WAIT_GRADIENTS = 3
    PHASE_UPDATE = 4
    PHASE_WAIT_UPDATE = 5
    PHASE_EPOCH = 6

# NumPy's OpenBLAS, when _blas.py chose it: its ILP64 Fortran GEMMs (64-bit sizes), called in
# place of scipy.linalg.cython_blas's. NULL: SciPy's.
ctypedef void (*sgemm64_fn)(char*, char*, int64_t*, int64_t*, int64_t*, float*, float*,
                            int64_t*, float*, int64_t*, float*, float*, int64_t*) noexcept nogil
ctypedef void (*dgemm64_fn)(char*, char*, int64_t*, int64_t*, int64_t*, double*, double*,
                            int64_t*, double*, int64_t*, double*, double*, int64_t*) noexcept nogil
cdef sgemm64_fn _sgemm64 = NULL
cdef dgemm64_fn _dgemm64 = NULL


def use_ilp64_gemm(size_t sgemm_address, size_t dgemm_address):
    """GEMMs from now on through the ILP64 Fortran GEMMs at these addresses (0: SciPy's, through
    cython_blas). Called at import (cython_backend.py) and by tests, between calls only."""
    global _sgemm64, _dgemm64
    _sgemm64 = <sgemm64_fn>sgemm_address
    _dgemm64 = <dgemm64_fn>dgemm_address


def max_threads():
    """OpenMP's thread count (1 when built without OpenMP)."""
    return fastmlp_max_threads()


#: What phase_times() reports, in its column order: the row gather, the forward and backward
#: passes (GEMMs and epilogues), their GEMMs alone, the barrier wait for every thread's
#: gradient, the update, the barrier wait for the updated θ, and whole epochs.
PHASES = ("gather", "forward_backward", "gemm", "wait_gradients", "update", "wait_update",
          "epoch")


def phase_times(int threads):
    """Seconds spent in each of PHASES by threads 0..threads-1 since the last call (all zero
    unless fastmlp._build_info.phase_timers_enabled()), as a list of rows; the sums restart."""
    cdef int tid, phase
    totals = [[fastmlp_phase_get(tid, phase) for phase in range(len(PHASES))]
              for tid in range(threads)]
    fastmlp_phase_reset()
    return totals


cdef inline void _gemm_into(char transa, char transb, Py_ssize_t m, Py_ssize_t n,
                            Py_ssize_t k, floating alpha, floating* a, Py_ssize_t lda,
                            floating* b, Py_ssize_t ldb, floating beta, floating* c,
                            Py_ssize_t ldc) noexcept nogil:
    """c = alpha·a·b + beta·c. BLAS takes 32-bit sizes: the callers keep every size below 2³¹
    (units per layer: the contract's MAX_UNITS; rows: blocks, or slices of BLAS_ROWS)."""
    cdef int m_ = <int>m, n_ = <int>n, k_ = <int>k
    cdef int lda_ = <int>lda, ldb_ = <int>ldb, ldc_ = <int>ldc
    cdef int64_t m64 = m, n64 = n, k64 = k, lda64 = lda, ldb64 = ldb, ldc64 = ldc
    cdef double since = fastmlp_clock()
    if floating is float and _sgemm64 != NULL:
        _sgemm64(&transa, &transb, &m64, &n64, &k64, &alpha, a, &lda64, b, &ldb64, &beta, c,
                 &ldc64)
    elif floating is double and _dgemm64 != NULL:
        _dgemm64(&transa, &transb, &m64, &n64, &k64, &alpha, a, &lda64, b, &ldb64, &beta, c,
                 &ldc64)
    elif floating is float:
        sgemm(&transa, &transb, &m_, &n_, &k_, &alpha, a, &lda_, b, &ldb_, &beta, c, &ldc_)
    else:
        dgemm(&transa, &transb, &m_, &n_, &k_, &alpha, a, &lda_, b, &ldb_, &beta, c, &ldc_)
    fastmlp_phase_add(PHASE_GEMM, since)


cdef inline void _gemm(char transa, char transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                       floating* a, Py_ssize_t lda, floating* b, Py_ssize_t ldb, floating* c,
                       Py_ssize_t ldc) noexcept nogil:
    """c = a·b."""
    _gemm_into(transa, transb, m, n, k, 1, a, lda, b, ldb, 0, c, ldc)


cdef void _row_times(floating* a, floating* W, floating* out, Py_ssize_t n_in,
                     Py_ssize_t n_out) noexcept nogil:
    """out = a·W for one row a: BLAS's gemv through SciPy's BLAS, as numba's np.dot takes a
    (1, k)·(k, n) product (a GEMM would pack all of W for one row)."""
    cdef char trans = c'N'
    cdef int m = <int>n_out, n = <int>n_in, inc = 1
    cdef floating one = 1, zero = 0
    # W, row-major (n_in, n_out), is column-major (n_out, n_in) with lda = n_out
    if floating is float:
        sgemv(&trans, &m, &n, &one, W, &m, a, &inc, &zero, out, &inc)
    else:
        dgemv(&trans, &m, &n, &one, W, &m, a, &inc, &zero, out, &inc)


cdef void _weight_gradient(floating* A_in, floating* delta, floating* grad_W, Py_ssize_t n,
                           Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """grad_W = A_inᵀδ over n rows: one GEMM, or for more than BLAS_ROWS rows (past BLAS's 32-bit
    sizes) one per slice of BLAS_ROWS, summed into grad_W in row order."""
    cdef Py_ssize_t r0 = 0, rows = n if n < BLAS_ROWS else BLAS_ROWS
    _gemm(c'N', c'T', n_out, n_in, rows, delta, n_out, A_in, n_in, grad_W, n_out)
    r0 = rows
    while r0 < n:
        rows = n - r0 if n - r0 < BLAS_ROWS else BLAS_ROWS
        _gemm_into(c'N', c'T', n_out, n_in, rows, 1, delta + r0 * n_out, n_out,
                   A_in + r0 * n_in, n_in, 1, grad_W, n_out)
        r0 += rows


cdef inline double _squared_norm(floating* x, Py_ssize_t n) noexcept nogil:
    """Σ x² through BLAS dot (a plain loop would be a latency-bound serial reduction), in
    slices of BLAS_ROWS elements past BLAS's 32-bit sizes."""
    cdef int inc = 1, m
    cdef Py_ssize_t p = 0
    cdef double total = 0.0
    while p < n:
        m = <int>(n - p if n - p < BLAS_ROWS else BLAS_ROWS)
        if floating is float:
            total += sdot(&m, x + p, &inc, x + p, &inc)
        else:
            total += ddot(&m, x + p, &inc, x + p, &inc)
        p += m
    return total


cdef inline Py_ssize_t _block_rows(Py_ssize_t n_cols, Py_ssize_t n_inner,
                                   Py_ssize_t itemsize) noexcept nogil:
    """Rows per GEMM block of an output n_cols wide over an inner dimension n_inner: about
    BLOCK_BYTES of output, at least MIN_BLOCK_ROWS and BLOCK_DEPTHS · n_inner."""
    cdef Py_ssize_t rows = BLOCK_BYTES // (n_cols * itemsize if n_cols * itemsize > 0 else 1)
    if rows < BLOCK_DEPTHS * n_inner:
        rows = BLOCK_DEPTHS * n_inner
    return (rows if rows > MIN_BLOCK_ROWS else MIN_BLOCK_ROWS)


# -- elementwise pieces ----------------------------------------------------------------------
cdef inline floating _exp(floating x) noexcept nogil:
    """exp in the argument's precision (expf for float32: no round trip through double)."""
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    """tanh in the argument's precision (tanhf for float32)."""
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef void _activate_row(floating* z, Py_ssize_t n, int act, floating slope) noexcept nogil:
    """Mirrors activations.activate on one row, in place, in θ's dtype."""
    cdef Py_ssize_t j
    cdef floating e, one = 1
    if act == LOGISTIC:
        for j in range(n):
            e = _exp(-z[j] if z[j] >= 0 else z[j])  # exp(-|z|), in θ's dtype
            z[j] = (one if z[j] >= 0 else e) / (one + e)
    elif act == TANH:
        for j in range(n):
            z[j] = _tanh(z[j])
    elif act == RELU:
        for j in range(n):
            if z[j] < 0:
                z[j] = 0
    elif act == LEAKY_RELU:
        for j in range(n):
            if z[j] < 0:
                z[j] = z[j] * slope
    elif act == EXP:
        for j in range(n):
            z[j] = _exp(z[j])


cdef inline floating _sqrt(floating x) noexcept nogil:
    """sqrt in the argument's precision: sqrtf is one vector instruction per 16 float32;
    sqrt through double costs two conversions and two double square roots (and rounds the
    same: both are correctly rounded)."""
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _log(floating x) noexcept nogil:
    """log in the argument's precision, as the reference's np.log."""
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef void _bias_softmax_rows(floating* z, floating* b, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """z += b, then activations.softmax on `rows` rows of n, in θ's dtype: z - row max, exp,
    / row sum. The bias, max and shift are one pass per row; the exp runs as one loop over
    the whole block, so it vectorises."""
    cdef Py_ssize_t i, j
    cdef Py_ssize_t k
    cdef floating top, total
    cdef floating* row
    for i in range(rows):
        row = z + <Py_ssize_t>i * n
        for j in range(n):
            row[j] = row[j] + b[j]
        top = row[0]
        for j in range(1, n):
            top = row[j] if row[j] > top else top
        for j in range(n):
            row[j] = row[j] - top
    for k in range(<Py_ssize_t>rows * n):
        z[k] = _exp(z[k])
    for i in range(rows):
        row = z + <Py_ssize_t>i * n
        total = 0
        for j in range(n):
            total += row[j]
        for j in range(n):
            row[j] = row[j] / total


cdef void _bias_activate(floating* out, floating* b, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n_out, int act,
                         floating slope) noexcept nogil:
    """Epilogue of the forward pass on rows r0:r1: out += b, then out = g(out)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating v
    if act == RELU:  # fused, one pass (the common hidden layer)
        for i in range(r0, r1):
            row = out + <Py_ssize_t>i * n_out
            for j in range(n_out):
                v = row[j] + b[j]
                row[j] = 0 if v < 0 else v
        return
    if act == SOFTMAX:
        _bias_softmax_rows(out + <Py_ssize_t>r0 * n_out, b, r1 - r0, n_out)
        return
    for i in range(r0, r1):
        row = out + <Py_ssize_t>i * n_out
        for j in range(n_out):
            row[j] += b[j]
        if act != IDENTITY:
            _activate_row(row, n_out, act, slope)


cdef void _times_derivative(floating* delta_in, floating* A_in, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n, int act,
                            floating slope) noexcept nogil:
    """Epilogue of the backward pass on rows r0:r1: δ_in *= g'(A_in) (from the output A)."""
    cdef Py_ssize_t k, lo = <Py_ssize_t>r0 * n, hi = <Py_ssize_t>r1 * n
    if act == LOGISTIC:
        for k in range(lo, hi):
            delta_in[k] *= A_in[k] * (1 - A_in[k])
    elif act == TANH:
        for k in range(lo, hi):
            delta_in[k] *= 1 - A_in[k] * A_in[k]
    elif act == RELU:
        for k in range(lo, hi):
            delta_in[k] *= (1 if A_in[k] > 0 else 0)
    elif act == LEAKY_RELU:
        for k in range(lo, hi):
            delta_in[k] *= (1 if A_in[k] > 0 else slope)


# One minibatch's update constants, Step (_records.pxd, from _layout.STEP), each a value of
# θ's dtype held as a double: the kernels cast them back to θ's dtype, exactly.


# -- layer kernels ---------------------------------------------------------------------------
cdef void _forward(floating* A_in, floating* W, floating* b, floating* out, Py_ssize_t n, Py_ssize_t n_in,
                   Py_ssize_t n_out, int act, floating slope) noexcept nogil:
    """Mirrors reference.forward_layer: out = g(A_in @ W + b)."""
    _forward_as(A_in, W, b, out, n, n_in, n_out, act, slope, n,
                _block_rows(n_out, n_in, sizeof(floating)))


cdef void _forward_as(floating* A_in, floating* W, floating* b, floating* out, Py_ssize_t n,
                      Py_ssize_t n_in, Py_ssize_t n_out, int act, floating slope,
                      Py_ssize_t regime_rows, Py_ssize_t block) noexcept nogil:
    """_forward with its products run as plain loops or as BLAS GEMMs as they would for
    regime_rows rows, a GEMM per `block` rows."""
    cdef Py_ssize_t i, j, k, r0, r1
    cdef floating a
    cdef floating* row
    if <Py_ssize_t>regime_rows * n_in * n_out < SMALL_WORK:
        for i in range(n):
            row = out + <Py_ssize_t>i * n_out
            for j in range(n_out):
                row[j] = 0
            for k in range(n_in):
                a = A_in[<Py_ssize_t>i * n_in + k]
                for j in range(n_out):
                    row[j] += a * W[<Py_ssize_t>k * n_out + j]
        _bias_activate(out, b, 0, n, n_out, act, slope)
        return
    r0 = 0
    while r0 < n:
        r1 = r0 + block if r0 + block < n else n
        _gemm(c'N', c'N', n_out, r1 - r0, n_in, W, n_out, A_in + <Py_ssize_t>r0 * n_in, n_in,
              out + <Py_ssize_t>r0 * n_out, n_out)
        _bias_activate(out, b, r0, r1, n_out, act, slope)
        r0 = r1


cdef void _derivative_and_sum(floating* d, floating* a, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n, int act,
                              floating slope, floating* sums) noexcept nogil:
    """_times_derivative on rows r0:r1; with sums, each finished row is also added into sums
    while it is in L1 (Σ_rows δ_in: the bias gradient of the layer below, rows in order)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating* arow
    if sums == NULL:
        _times_derivative(d, a, r0, r1, n, act, slope)
        return
    for i in range(r0, r1):
        row = d + <Py_ssize_t>i * n
        if act == RELU:  # the usual hidden layer: one fused, vectorised loop
            arow = a + <Py_ssize_t>i * n
            for j in range(n):
                row[j] *= (1 if arow[j] > 0 else 0)
                sums[j] += row[j]
        else:
            _times_derivative(d, a, i, i + 1, n, act, slope)
            for j in range(n):
                sums[j] += row[j]


cdef void _backward(floating* A_in, floating* delta, floating* W, floating* grad_W, floating* grad_b,
                    floating* delta_in, Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out, int act_in,
                    floating slope, floating* gb_in, const Step* fused) noexcept nogil:
    """Mirrors reference.backward_layer: grad_W = A_inᵀδ, grad_b = Σ_rows δ, δ_in = (δWᵀ) ⊙ g'(A_in).

    grad_b NULL: the bias gradient is summed already (by the layer above as it made δ).
    delta_in NULL: no δ_in (the input layer; numba says so with want_delta_in). gb_in (or
    NULL): where to sum δ_in's rows, i.e. the layer below's bias gradient, in the same pass.
    fused (or NULL): a plain SGD step whose update of W rides on the gradient's GEMM
    (_fuses), W = fused.beta·W + fused.alpha·A_inᵀδ, after δ_in has read the old W; grad_W is then
    not written."""
    cdef Py_ssize_t i, j, k, r0, r1, block
    cdef floating a, s
    cdef floating wt[NARROW_WORDS]
    cdef bint narrow
    if grad_b != NULL:
        for j in range(n_out):
            grad_b[j] = 0
        for i in range(n):
            for j in range(n_out):
                grad_b[j] += delta[<Py_ssize_t>i * n_out + j]
    if delta_in != NULL and gb_in != NULL:
        for k in range(n_in):
            gb_in[k] = 0
    if <Py_ssize_t>n * n_in * n_out < SMALL_WORK:
        for k in range(<Py_ssize_t>n_in * n_out):
            grad_W[k] = 0
        for i in range(n):
            for k in range(n_in):
                a = A_in[<Py_ssize_t>i * n_in + k]
                for j in range(n_out):
                    grad_W[<Py_ssize_t>k * n_out + j] += a * delta[<Py_ssize_t>i * n_out + j]
        if delta_in != NULL:
            for i in range(n):
                for k in range(n_in):
                    s = 0
                    for j in range(n_out):
                        s = s + delta[<Py_ssize_t>i * n_out + j] * W[<Py_ssize_t>k * n_out + j]
                    delta_in[<Py_ssize_t>i * n_in + k] = s
            _derivative_and_sum(delta_in, A_in, 0, n, n_in, act_in, slope, gb_in)
        return
    if fused == NULL:
        _weight_gradient(A_in, delta, grad_W, n, n_in, n_out)
    if delta_in != NULL:
        # A narrow δ (a classifier's output layer): Wᵀ copied to the stack turns δWᵀ into a
        # gemm('N', 'N'), which OpenBLAS runs faster than gemm('T', 'N') on W, copy included
        # (`python -m bench.crossover` measures both).
        narrow = n_out <= NARROW_OUT and n_in * n_out <= NARROW_WORDS
        if narrow:
            for j in range(n_out):
                for k in range(n_in):
                    wt[j * n_in + k] = W[<Py_ssize_t>k * n_out + j]
        block = _block_rows(n_in, n_out, sizeof(floating))
        r0 = 0
        while r0 < n:
            r1 = r0 + block if r0 + block < n else n
            if narrow:
                _gemm(c'N', c'N', n_in, r1 - r0, n_out, wt, n_in, delta + <Py_ssize_t>r0 * n_out,
                      n_out, delta_in + <Py_ssize_t>r0 * n_in, n_in)
            else:
                _gemm(c'T', c'N', n_in, r1 - r0, n_out, W, n_out, delta + <Py_ssize_t>r0 * n_out,
                      n_out, delta_in + <Py_ssize_t>r0 * n_in, n_in)
            _derivative_and_sum(delta_in, A_in, r0, r1, n_in, act_in, slope, gb_in)
            r0 = r1
    if fused != NULL:
        _gemm_into(c'N', c'T', n_out, n_in, n, <floating>fused.alpha, delta, n_out, A_in, n_in,
                   <floating>fused.beta, W, n_out)


cdef inline Py_ssize_t _index(const void* index, bint wide, Py_ssize_t k) noexcept nogil:
    """Element k of a CSR input's int64 (wide) or int32 column indices or row pointers."""
    if wide:
        return (<const int64_t*>index)[k]
    return (<const int32_t*>index)[k]


cdef void _sparse_forward(const floating* values, const void* indices, bint wide,
                          const void* indptr, const int64_t* rows, Py_ssize_t n,
                          floating* W, floating* b, floating* out, Py_ssize_t n_out, int act,
                          floating slope) noexcept nogil:
    """Mirrors reference.forward_layer on rows `rows` (n of them) of a CSR input: out =
    g(X[rows] @ W + b), each row the sum of its non-zeros' rows of W in stored order."""
    cdef Py_ssize_t i, j, k, src
    cdef floating v
    cdef floating* row
    cdef floating* w
    for i in range(n):
        row = out + i * n_out
        for j in range(n_out):
            row[j] = 0
        src = rows[i]
        for k in range(_index(indptr, wide, src), _index(indptr, wide, src + 1)):
            v = values[k]
            w = W + _index(indices, wide, k) * n_out
            for j in range(n_out):
                row[j] += v * w[j]
    _bias_activate(out, b, 0, n, n_out, act, slope)


cdef void _sparse_gradient(const floating* values, const void* indices, bint wide,
                           const void* indptr, const int64_t* rows, Py_ssize_t n,
                           floating* delta, floating* grad_W, floating* grad_b, Py_ssize_t n_in,
                           Py_ssize_t n_out, bint gb_ready) noexcept nogil:
    """Mirrors reference.backward_layer for rows `rows` of a CSR input (the network's input:
    no δ_in): grad_W = X[rows]ᵀ δ, each non-zero adding its δ row to its W row; grad_b = Σ_rows δ
    unless gb_ready (summed already)."""
    cdef Py_ssize_t i, j, k, src
    cdef floating v
    cdef floating* d
    cdef floating* g
    memset(grad_W, 0, <size_t>(n_in * n_out) * sizeof(floating))
    if not gb_ready:
        for j in range(n_out):
            grad_b[j] = 0
        for i in range(n):
            for j in range(n_out):
                grad_b[j] += delta[i * n_out + j]
    for i in range(n):
        d = delta + i * n_out
        src = rows[i]
        for k in range(_index(indptr, wide, src), _index(indptr, wide, src + 1)):
            v = values[k]
            g = grad_W + _index(indices, wide, k) * n_out
            for j in range(n_out):
                g[j] += v * d[j]


cdef inline floating _clipped(floating y) noexcept nogil:
    """losses.clipped for one output: within [eps, 1 - eps] of its dtype."""
    cdef floating eps = FLT_EPSILON if floating is float else DBL_EPSILON
    return eps if y < eps else (1 - eps if y > 1 - eps else y)


cdef double _softmax_cross_entropy_delta(floating* Y_out, floating* R, floating* D, floating* w,
                                        Py_ssize_t n, Py_ssize_t m, bint has_sw,
                                        floating* gb) noexcept nogil:
    """_output_delta for the usual classifier, softmax + cross-entropy: per row
    L = -Σ r ln clipped(y) and δ = y Σr - r, in θ's dtype as the reference computes them.
    The logs of the whole block come first, as one loop that vectorises, into D (each row
    reads them before writing its δ there); the rows then run without a branch on r (a term
    with r = 0 adds an exact 0: the log is finite)."""
    cdef Py_ssize_t i, j
    cdef Py_ssize_t k
    cdef double total = 0.0
    cdef floating li, s
    cdef floating* y
    cdef floating* r
    cdef floating* d
    for k in range(<Py_ssize_t>n * m):
        D[k] = _log(_clipped(Y_out[k]))
    for i in range(n):
        y = Y_out + <Py_ssize_t>i * m
        r = R + <Py_ssize_t>i * m
        d = D + <Py_ssize_t>i * m
        li = 0
        s = 0
        for j in range(m):
            li = li - r[j] * d[j]
            s = s + r[j]
        for j in range(m):
            d[j] = y[j] * s - r[j]
        if has_sw:
            for j in range(m):
                d[j] = d[j] * w[i]
            li = li * w[i]
        if gb != NULL:
            for j in range(m):
                gb[j] += d[j]
        total += li
    return total


cdef double _output_delta(floating* A_out, floating* Y, floating* delta, floating* sw, Py_ssize_t n,
                          Py_ssize_t m, int act, int loss, bint has_sw, floating slope,
                          floating tiny, floating* gb) noexcept nogil:
    """Mirrors reference.output_delta: δ_out into delta, returns Σ_i w_i L_i (double). With gb
    (or NULL): Σ_rows δ_out into it, row by row as each δ row is made (the output layer's
    bias gradient, in the order _backward would sum it)."""
    cdef Py_ssize_t i, j
    cdef Py_ssize_t k
    cdef double total = 0.0, li, s
    cdef floating c
    cdef floating* y
    cdef floating* r
    cdef floating* d
    if gb != NULL:
        for j in range(m):
            gb[j] = 0
    if act == SOFTMAX and loss == CROSS_ENTROPY:
        return _softmax_cross_entropy_delta(A_out, Y, delta, sw, n, m, has_sw, gb)
    for i in range(n):
        y = A_out + <Py_ssize_t>i * m
        r = Y + <Py_ssize_t>i * m
        d = delta + <Py_ssize_t>i * m
        li = 0.0
        for j in range(m):  # a term whose target factor is 0 adds exactly 0: skipped
            if loss == SQUARED_ERROR:
                li += 0.5 * (y[j] - r[j]) * (y[j] - r[j])
            elif loss == CROSS_ENTROPY:
                if r[j] != 0:
                    li -= r[j] * log(_clipped(y[j]))
            elif loss == POISSON:
                li += y[j] - r[j]
                if r[j] != 0:
                    li += r[j] * (log(r[j]) - log(y[j] if y[j] > tiny else tiny))
            else:
                c = _clipped(y[j])
                if r[j] != 0:
                    li -= r[j] * log(c)
                if r[j] != 1:
                    li -= (1 - r[j]) * log(1 - c)
        if act == SOFTMAX:  # (cross-entropy: _softmax_cross_entropy_delta)
            if loss == SQUARED_ERROR:
                s = 0.0
                for j in range(m):
                    s += y[j] * (y[j] - r[j])
                for j in range(m):
                    d[j] = <floating>(y[j] * ((y[j] - r[j]) - s))
            else:
                s = 0.0
                for j in range(m):
                    d[j] = -r[j] + (1 - r[j]) * y[j] / ((1 - y[j]) if (1 - y[j]) > tiny else tiny)
                    s += d[j]
                for j in range(m):
                    d[j] = <floating>(d[j] - y[j] * s)
        elif act == LOGISTIC:
            for j in range(m):
                if loss == BINARY_CROSS_ENTROPY:
                    d[j] = y[j] - r[j]
                elif loss == CROSS_ENTROPY:
                    d[j] = -r[j] * (1 - y[j])
                else:
                    d[j] = (y[j] - r[j]) * y[j] * (1 - y[j])
        elif act == EXP:  # poisson, canonical
            for j in range(m):
                d[j] = y[j] - r[j]
        else:
            for j in range(m):
                d[j] = y[j] - r[j]
            _times_derivative(d, y, 0, 1, m, act, slope)
        if has_sw:
            for j in range(m):
                d[j] = d[j] * sw[i]
            li *= sw[i]
        if gb != NULL:
            for j in range(m):
                gb[j] += d[j]
        total += li
    return total


# -- the compiled epoch ----------------------------------------------------------------------
# One train_epochs call: _layout's five bundles as raw pointers and sizes (the arrays were
# checked in Python; the floating ones are cast to θ's dtype where they are read).
cdef struct Run:
    # Network
    void* theta
    const int64_t* offsets  # (n_layers, 2): where W_l and b_l start in θ
    const int64_t* sizes    # (n_layers + 1,): units per layer
    int n_layers
    Py_ssize_t n_params
    int hidden, output, loss
    double slope
    # Data
    const void* X  # NULL when sparse: the CSR arrays below hold it
    bint sparse
    const void* X_values
    const void* X_indices  # column indices and row pointers: int64 if wide_indices, else
    const void* X_indptr   # int32 (scipy gives both the same dtype)
    bint wide_indices
    const void* Y
    const void* sw
    bint has_sw
    const int64_t* orders
    Py_ssize_t n_orders
    Py_ssize_t n
    Py_ssize_t n0, n_last
    # Optimizer
    const Hyper* hyper
    const double* learning_rates
    Py_ssize_t n_epochs
    void* first
    void* second
    # Workspace
    void* grad
    void* parts  # (n_chunks, n_params)
    double* part_losses
    int n_chunks
    void* acts
    void* deltas
    void* xb
    void* yb
    void* wb
    void* saved  # (3, n_params)
    Py_ssize_t a_stride, x_stride, y_stride  # one chunk's region in acts/deltas, xb, yb
    # Control
    Py_ssize_t batch_size, min_chunk_rows
    bint guard
    Plateau* plateau
    Outcome* outcome
    double* terms  # (n_epochs, 2)
    const int64_t* stop_flag  # raised (by a signal handler): end after this minibatch
    double time_budget, started  # seconds: no new epoch after started + time_budget
    bint stop      # thread 0's decision, read by the team after a barrier
    int threads    # a split minibatch's team (1: this thread runs every chunk)


cdef inline Py_ssize_t _weights_at(const Run* r, int l) noexcept nogil:
    return r.offsets[2 * l]


cdef inline Py_ssize_t _biases_at(const Run* r, int l) noexcept nogil:
    return r.offsets[2 * l + 1]


cdef inline floating _summed(floating* g0, floating* g1, Py_ssize_t p) noexcept nogil:
    """The raw gradient: g0[p], or g0[p] + g1[p] for two threads' buffers (the loop tests
    g1 once: gcc unswitches it)."""
    return g0[p] + g1[p] if g1 != NULL else g0[p]


cdef inline floating _mean(floating x, floating wsum, floating inverse) noexcept nogil:
    """x / wsum. For a power-of-two wsum (a batch of 1, 32, 128 ...) x · (1 / wsum) is the
    same correctly rounded number, and a multiply costs a fraction of a divide, which bounds
    the update of small batches (both loop-invariant tests are unswitched by gcc). A float32
    quotient through a double reciprocal, <float>(<double>x * (1.0 / wsum)), is not this
    number: it differs at exact ties below FLT_MIN (x a multiple of 2**-149)."""
    return x * inverse if inverse != 0 else x / wsum


cdef inline double _exact_inverse(double x) noexcept nogil:
    """1 / x if x is a power of two (so the reciprocal is exact), else 0."""
    cdef int exponent
    return 1.0 / x if x > 0 and frexp(x, &exponent) == 0.5 else 0.0


cdef void _update(floating* theta, floating* g0, floating* g1, floating* first,
                  floating* second, Py_ssize_t lo, Py_ssize_t hi, floating l2,
                  const Step* step) noexcept nogil:
    """Mirrors reference.minibatch_step's tail and optim.step on θ[lo:hi], the raw gradient
    being g0 (+ g1): summing the threads' buffers here saves a pass over them."""
    cdef Py_ssize_t p
    cdef floating g, v, m, s
    cdef floating lr = <floating>step.lr, momentum = <floating>step.momentum
    cdef floating wsum = <floating>step.weight_sum, inverse = <floating>step.inverse
    cdef floating b1 = <floating>step.beta_1, omb1 = <floating>step.one_minus_beta_1
    cdef floating b2 = <floating>step.beta_2, omb2 = <floating>step.one_minus_beta_2
    cdef floating eps = <floating>step.epsilon, size = <floating>step.adam_step
    cdef floating decay = <floating>step.decay, root = <floating>step.bias_root
    if step.rule == SGD:
        for p in range(lo, hi):
            theta[p] -= lr * _mean(_summed(g0, g1, p) + l2 * theta[p], wsum, inverse)
    elif step.rule == MOMENTUM:
        for p in range(lo, hi):
            g = _mean(_summed(g0, g1, p) + l2 * theta[p], wsum, inverse)
            v = momentum * first[p] - lr * g
            first[p] = v
            theta[p] += v
    elif step.rule == NESTEROV:
        for p in range(lo, hi):
            g = _mean(_summed(g0, g1, p) + l2 * theta[p], wsum, inverse)
            v = momentum * first[p] - lr * g
            first[p] = v
            theta[p] += momentum * v - lr * g
    elif step.rule == ADAM:
        for p in range(lo, hi):
            g = _mean(_summed(g0, g1, p) + l2 * theta[p], wsum, inverse)
            m = b1 * first[p] + omb1 * g
            s = b2 * second[p] + omb2 * g * g
            first[p] = m
            second[p] = s
            theta[p] -= size * m / (_sqrt(s) + eps)
    else:  # ADAMW
        for p in range(lo, hi):
            g = _mean(_summed(g0, g1, p) + l2 * theta[p], wsum, inverse)
            m = b1 * first[p] + omb1 * g
            s = b2 * second[p] + omb2 * g * g
            first[p] = m
            second[p] = s
            theta[p] = theta[p] * decay - size * (m / (_sqrt(s) / root + eps))


cdef inline bint _fuses(const Run* r, int l, const Step* step) noexcept nogil:
    """Whether layer l's plain SGD update of W rides on its gradient's GEMM (beta = the L2
    decay, alpha = -lr/Σw): a minibatch not split (step.fused_rows of them, set by _epoch),
    a dense layer on the BLAS side of SMALL_WORK, one BLAS slice. That saves the gradient's
    write and the update's pass over W, which run on one thread while BLAS's run the GEMMs
    (python -m bench.phases --problems W3 W4); the rounding is BLAS's, not the reference's
    (θ·beta + alpha·Σ, each rounded once), as a BLAS-threaded GEMM's sums already are."""
    cdef Py_ssize_t rows = step.fused_rows if step != NULL else 0
    return (rows > 0 and not (l == 0 and r.sparse) and rows <= BLAS_ROWS
            and rows * r.sizes[l] * r.sizes[l + 1] >= SMALL_WORK)


cdef double _forward_backward(const Run* r, const int64_t* rows, floating* xb, floating* yb,
                              floating* wb, floating* acts, floating* deltas, floating* grad,
                              Py_ssize_t nb, Py_ssize_t r0, Py_ssize_t r1,
                              const Step* step) noexcept nogil:
    """Mirrors reference.minibatch_step's forward and backward passes (numba's
    _forward_backward), on rows r0:r1 of a gathered minibatch of nb rows: the gradient
    summed over them into grad; returns their summed loss. A sparse X is not gathered: the
    first layer reads its rows rows[r0:r1] (the minibatch's rows of X) in place. A layer
    that _fuses(r, l, step) gets its plain SGD update of W here instead (_backward)."""
    cdef floating* theta = <floating*>r.theta
    cdef int n_layers = r.n_layers, l
    cdef Py_ssize_t n_in, n_out, n_rows = r1 - r0
    cdef Py_ssize_t n0 = r.n0, n_last = r.n_last
    cdef Py_ssize_t pos = 0, prev = 0
    cdef floating* a_in = xb + <Py_ssize_t>r0 * n0
    cdef floating slope = <floating>r.slope
    cdef floating tiny = FLT_MIN if floating is float else DBL_MIN
    cdef double batch_loss
    for l in range(n_layers):
        n_in = r.sizes[l]
        n_out = r.sizes[l + 1]
        if l == 0 and r.sparse:
            _sparse_forward(<const floating*>r.X_values, r.X_indices, r.wide_indices,
                            r.X_indptr, rows + r0,
                            n_rows, theta + _weights_at(r, l), theta + _biases_at(r, l),
                            acts + pos + <Py_ssize_t>r0 * n_out, n_out,
                            r.output if l == n_layers - 1 else r.hidden, slope)
        else:
            _forward(a_in, theta + _weights_at(r, l), theta + _biases_at(r, l),
                     acts + pos + <Py_ssize_t>r0 * n_out, n_rows, n_in, n_out,
                     r.output if l == n_layers - 1 else r.hidden, slope)
        a_in = acts + pos + <Py_ssize_t>r0 * n_out
        pos += <Py_ssize_t>nb * n_out
    pos -= <Py_ssize_t>nb * n_last
    # every layer's bias gradient is summed as its δ is made: the output layer's here, a
    # hidden layer's by the layer above it
    batch_loss = _output_delta(a_in, yb + <Py_ssize_t>r0 * n_last, deltas + pos + <Py_ssize_t>r0 * n_last,
                               wb + r0, n_rows, n_last, r.output, r.loss, r.has_sw, slope, tiny,
                               grad + _biases_at(r, n_layers - 1))
    for l in range(n_layers - 1, -1, -1):
        n_in = r.sizes[l]
        n_out = r.sizes[l + 1]
        if l > 0:
            prev = pos - <Py_ssize_t>nb * n_in
            _backward(acts + prev + <Py_ssize_t>r0 * n_in, deltas + pos + <Py_ssize_t>r0 * n_out,
                      theta + _weights_at(r, l), grad + _weights_at(r, l),
                      NULL, deltas + prev + <Py_ssize_t>r0 * n_in, n_rows, n_in,
                      n_out, r.hidden, slope, grad + _biases_at(r, l - 1),
                      step if _fuses(r, l, step) else NULL)
            pos = prev
        elif r.sparse:
            _sparse_gradient(<const floating*>r.X_values, r.X_indices, r.wide_indices,
                             r.X_indptr, rows + r0,
                             n_rows, deltas + pos + <Py_ssize_t>r0 * n_out,
                             grad + _weights_at(r, l), grad + _biases_at(r, l), n_in, n_out,
                             True)
        else:
            _backward(xb + <Py_ssize_t>r0 * n0, deltas + pos + <Py_ssize_t>r0 * n_out,
                      theta + _weights_at(r, l), grad + _weights_at(r, l),
                      NULL, NULL, n_rows, n_in, n_out, r.hidden, slope,
                      NULL, step if _fuses(r, l, step) else NULL)
    return batch_loss


cdef inline Py_ssize_t _slice_start(int c, int n_chunks, Py_ssize_t n_params) noexcept nogil:
    """Where thread-slice c of θ starts (_layout.SLICE_ALIGN)."""
    return n_params if c == n_chunks else (c * n_params // n_chunks) // SLICE_ALIGN * SLICE_ALIGN


cdef void _update_slice(const Run* r, floating* theta, floating* g0, floating* g1, Py_ssize_t lo,
                        Py_ssize_t hi, const Step* step) noexcept nogil:
    """_update on θ[lo:hi], layer by layer: L2 on the weights, none on the biases; the
    weights of a layer that _fuses were updated by its backward pass already."""
    cdef int l
    cdef Py_ssize_t w0, b0, b1
    cdef floating* first = <floating*>r.first
    cdef floating* second = <floating*>r.second
    cdef floating l2 = <floating>step.l2, zero = 0
    for l in range(r.n_layers):
        w0 = _weights_at(r, l)
        b0 = _biases_at(r, l)
        b1 = b0 + r.sizes[l + 1]
        if w0 < lo:
            w0 = lo
        if b0 > hi:
            b0 = hi
        if w0 < b0 and not _fuses(r, l, step):
            _update(theta, g0, g1, first, second, w0, b0, l2, step)
        b0 = _biases_at(r, l)
        if b0 < lo:
            b0 = lo
        if b1 > hi:
            b1 = hi
        if b0 < b1:
            _update(theta, g0, g1, first, second, b0, b1, zero, step)


cdef void _gather(const Run* r, const floating* X, const int64_t* order, Py_ssize_t first, Py_ssize_t rows,
                  floating* xb, floating* yb, floating* wb) noexcept nogil:
    """Rows order[first : first + rows] of X, Y, sw into the first rows of xb, yb, wb."""
    cdef Py_ssize_t i, j, n0 = r.n0, n_last = r.n_last
    cdef Py_ssize_t src
    cdef const floating* Y = <const floating*>r.Y
    cdef const floating* sw = <const floating*>r.sw
    for i in range(rows):
        src = order[first + i]
        if not r.sparse:
            for j in range(n0):
                xb[<Py_ssize_t>i * n0 + j] = X[src * n0 + j]
        for j in range(n_last):
            yb[<Py_ssize_t>i * n_last + j] = Y[src * n_last + j]
        wb[i] = sw[src]


cdef double _penalty_norm(const Run* r, floating* theta, floating l2) noexcept nogil:
    """Σ‖W_l‖² over the layers (0 without L2): the penalty's norm."""
    cdef double total = 0.0
    cdef int l
    if l2 != 0:
        for l in range(r.n_layers):
            total += _squared_norm(&theta[_weights_at(r, l)], _biases_at(r, l) - _weights_at(r, l))
    return total


cdef double _weight_sum(const floating* wb, Py_ssize_t nb, bint has_sw) noexcept nogil:
    """Σw over a gathered minibatch's nb rows (nb when unweighted)."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    for i in range(nb):
        total += wb[i] if has_sw else 1.0
    return total


cdef void _fuse_plain_sgd(Step* step, const floating* wb, Py_ssize_t nb, bint has_sw,
                          double lr, double l2) noexcept nogil:
    """Before an unsplit minibatch's backward pass: for plain SGD with a non-zero weight sum,
    the constants of W = beta·W + alpha·Aᵀδ (_fuses); otherwise no fusion."""
    cdef double weight_sum
    if step.rule != SGD:
        return
    weight_sum = _weight_sum(wb, nb, has_sw)
    if weight_sum == 0:
        return
    step.fused_rows = nb
    step.alpha = -lr / weight_sum
    step.beta = 1.0 - lr * l2 / weight_sum


cdef Py_ssize_t _epoch(const Run* r, floating* theta, const int64_t* order, floating lr, Py_ssize_t t,
                 double* terms, int tid, int team) noexcept nogil:
    """Mirrors reference._epoch: one pass over the rows in `order` at learning rate lr, run
    by every thread of a team of `team` (this one: tid; a team of 1 runs it all). Thread 0
    writes (Σ mean loss·rows, Σ mean L2 penalty·rows) into terms. Returns Adam's step count.

    A minibatch of at least n_chunks·min_chunk_rows rows is data-parallel: chunk c (a row
    block, its own gradient buffer parts[c]) and then slice c of the update belong to thread
    c mod team, so the results depend on the chunk count, never on the team. Two barriers per
    minibatch replace two fork/joins (numba's twin, which has no barrier, forks per phase).
    Chunk c's rows of xb, yb, acts and deltas are a region of their own (the buffers hold
    n_chunks regions, a gap apart: _layout.chunk_rows), so no thread streams through lines
    another writes; wb stays in minibatch order. `python -m bench.phases` shows the two
    threads' phases side by side. A minibatch whose sample weights are all zero makes no
    step and adds nothing to terms."""
    cdef const floating* X = <const floating*>r.X
    cdef floating* grad = <floating*>r.grad
    cdef floating* parts = <floating*>r.parts
    cdef floating* acts = <floating*>r.acts
    cdef floating* deltas = <floating*>r.deltas
    cdef floating* xb = <floating*>r.xb
    cdef floating* yb = <floating*>r.yb
    cdef floating* wb = <floating*>r.wb
    cdef int n_layers = r.n_layers, n_chunks = r.n_chunks
    cdef int c, l
    cdef Py_ssize_t nb, i, r0, r1
    cdef Py_ssize_t start, p, lo, hi, n = r.n, n_params = r.n_params
    cdef bint split, stepped
    cdef double weight_sum, batch_loss = 0.0, squared_norm = 0.0
    cdef floating l2 = <floating>r.hyper.l2
    cdef double beta_1 = r.hyper.beta_1, beta_2 = r.hyper.beta_2
    cdef double since
    cdef Step step
    step.rule = <int>r.hyper.rule
    step.lr = lr
    step.momentum = <floating>r.hyper.momentum
    step.l2 = l2
    step.beta_1 = <floating>beta_1
    step.one_minus_beta_1 = <floating>(1 - beta_1)
    step.beta_2 = <floating>beta_2
    step.one_minus_beta_2 = <floating>(1 - beta_2)
    step.epsilon = <floating>r.hyper.epsilon
    step.adam_step = 0
    step.decay = 1
    step.bias_root = 1
    if tid == 0:
        terms[0] = 0.0
        terms[1] = 0.0
    start = 0
    while start < n:
        nb = r.batch_size if start + r.batch_size <= n else n - start
        split = n_chunks > 1 and nb >= n_chunks * r.min_chunk_rows
        step.fused_rows = 0  # _fuse_plain_sgd may set it for an unsplit minibatch
        if split:
            c = tid
            while c < n_chunks:  # chunks tid, tid + team, ...
                r0 = c * nb // n_chunks
                r1 = (c + 1) * nb // n_chunks
                since = fastmlp_clock()
                _gather(r, X, order, start + r0, r1 - r0, &xb[c * r.x_stride],
                        &yb[c * r.y_stride], &wb[r0])
                fastmlp_phase_add(PHASE_GATHER, since)
                since = fastmlp_clock()
                r.part_losses[c] = _forward_backward(
                    r, order + start + r0, &xb[c * r.x_stride], &yb[c * r.y_stride],
                    &wb[r0],
                    &acts[c * r.a_stride], &deltas[c * r.a_stride], &parts[c * n_params],
                    r1 - r0, 0, r1 - r0, NULL)
                fastmlp_phase_add(PHASE_FORWARD_BACKWARD, since)
                c += team
        elif tid == 0:
            since = fastmlp_clock()
            _gather(r, X, order, start, nb, xb, yb, wb)
            fastmlp_phase_add(PHASE_GATHER, since)
            squared_norm = _penalty_norm(r, theta, l2)  # before _fuses writes any weight
            _fuse_plain_sgd(&step, wb, nb, r.has_sw, lr, l2)
            since = fastmlp_clock()
            batch_loss = _forward_backward(r, order + start, xb, yb, wb, acts, deltas, grad, nb,
                                           0, nb, &step)
            fastmlp_phase_add(PHASE_FORWARD_BACKWARD, since)
        if split and tid == 0:  # of the weights before this step's update (none written yet)
            squared_norm = _penalty_norm(r, theta, l2)
        since = fastmlp_clock()
        if team > 1:
            fastmlp_barrier()  # every chunk's gradient and rows are in
        fastmlp_phase_add(PHASE_WAIT_GRADIENTS, since)
        since = fastmlp_clock()
        weight_sum = _weight_sum(wb, nb, r.has_sw)  # every thread: the same sum and step
        step.weight_sum = <floating>weight_sum
        step.inverse = _exact_inverse(weight_sum)
        stepped = weight_sum != 0  # every weight zero: no mean gradient (0/0), so no step
        if stepped and step.rule == ADAM:
            t += 1
            step.adam_step = <floating>(lr * sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t))
        elif stepped and step.rule == ADAMW:
            t += 1
            step.adam_step = <floating>(lr / (1.0 - beta_1 ** t))
            step.decay = <floating>(1.0 - lr * r.hyper.weight_decay)
            step.bias_root = <floating>sqrt(1.0 - beta_2 ** t)
        if not stepped:
            pass
        elif split:
            # each thread sums its slices of the gradient buffers in the fixed order
            # 0..C-1, then updates them
            c = tid
            while c < n_chunks:
                lo = _slice_start(c, n_chunks, n_params)
                hi = _slice_start(c + 1, n_chunks, n_params)
                if n_chunks == 2:  # summed inside the update, in the same order
                    _update_slice(r, theta, parts, parts + n_params, lo, hi, &step)
                else:
                    for p in range(lo, hi):
                        grad[p] = parts[p]
                    for i in range(1, n_chunks - 1):
                        for p in range(lo, hi):
                            grad[p] += parts[i * n_params + p]
                    _update_slice(r, theta, grad, parts + (n_chunks - 1) * n_params, lo, hi,
                                  &step)
                c += team
        elif tid == 0:
            _update_slice(r, theta, grad, NULL, 0, n_params, &step)
        if tid == 0:
            if split:
                batch_loss = r.part_losses[0]
                for c in range(1, n_chunks):
                    batch_loss += r.part_losses[c]
            if stepped:
                terms[0] += batch_loss / weight_sum * nb
                terms[1] += 0.5 * l2 * squared_norm / weight_sum * nb
            if fastmlp_stop_requested(r.stop_flag):
                r.outcome.event = INTERRUPTED  # read by the team after the barrier
        fastmlp_phase_add(PHASE_UPDATE, since)
        since = fastmlp_clock()
        if team > 1:
            fastmlp_barrier()  # θ is updated before the next minibatch's forward pass
        fastmlp_phase_add(PHASE_WAIT_UPDATE, since)
        if r.outcome.event == INTERRUPTED:
            break
        start += nb
    return t


cdef bint _all_finite(floating* x, Py_ssize_t n) noexcept nogil:
    """True if no element is NaN or ±inf."""
    cdef Py_ssize_t p
    cdef int bad = 0
    # an integer OR reduction: vectorises without reordering float sums
    if floating is float:
        for p in range(n):
            bad |= not (fabsf(x[p]) <= FLT_MAX)
    else:
        for p in range(n):
            bad |= not (fabs(x[p]) <= DOUBLE_MAX)
    return not bad


cdef bint _plateau_update(Plateau* plateau, double loss) noexcept nogil:
    """Mirrors stopping.Plateau.update on the PLATEAU record: records one epoch's loss, True
    when it completes a plateau."""
    if loss > plateau.best - plateau.tol:
        plateau.count += 1
    else:
        plateau.count = 0
    if loss < plateau.best:
        plateau.best = loss
    return plateau.count > plateau.patience


cdef void _keep(const Run* r, floating* theta, int tid, int team, bint restore) noexcept nogil:
    """The guard's snapshot: θ and the moments in use to `saved` (restore: back from it),
    each thread the slices it updates (still in its cache from the last update)."""
    cdef floating* saved = <floating*>r.saved
    cdef floating* first = <floating*>r.first
    cdef floating* second = <floating*>r.second
    cdef Py_ssize_t lo, hi, n_params = r.n_params, width
    cdef int c = tid, rule = <int>r.hyper.rule
    while c < r.n_chunks:
        lo = _slice_start(c, r.n_chunks, n_params)
        hi = _slice_start(c + 1, r.n_chunks, n_params)
        width = (hi - lo) * sizeof(floating)
        if restore:
            memcpy(&theta[lo], &saved[lo], width)
        else:
            memcpy(&saved[lo], &theta[lo], width)
        if rule != SGD:  # _layout.Rule
            if restore:
                memcpy(&first[lo], &saved[n_params + lo], width)
            else:
                memcpy(&saved[n_params + lo], &first[lo], width)
        if rule >= ADAM:  # ADAM, ADAMW
            if restore:
                memcpy(&second[lo], &saved[2 * n_params + lo], width)
            else:
                memcpy(&saved[2 * n_params + lo], &second[lo], width)
        c += team


cdef void _run_epochs(Run* r, floating* theta) noexcept nogil:
    """Mirrors reference.train_epochs (numba's train_epochs), run by every thread of the
    team. Thread 0 alone applies the guard, the plateau rule and the time budget and
    publishes its decision in r.outcome and r.stop, which the team reads after a barrier;
    an interruption (_epoch) the team reads after the minibatch's barrier."""
    cdef int tid = fastmlp_thread_num(), team = fastmlp_team_size()
    cdef Py_ssize_t e, t = r.outcome.t, t_after
    cdef const int64_t* order
    cdef double epoch_loss, since
    cdef bint diverged
    for e in range(r.n_epochs):
        if r.guard:
            _keep(r, theta, tid, team, False)  # θ is only read until the epoch's barrier
        order = r.orders + (e if r.n_orders > 1 else 0) * r.n
        since = fastmlp_clock()
        t_after = _epoch(r, theta, order, <floating>r.learning_rates[e], t, &r.terms[2 * e],
                         tid, team)
        fastmlp_phase_add(PHASE_EPOCH, since)
        if r.outcome.event == INTERRUPTED:  # the epoch is undone; t and epochs stay
            if r.guard:
                _keep(r, theta, tid, team, True)
            break
        if tid == 0:
            epoch_loss = r.terms[2 * e] / r.n / r.plateau.scale + r.terms[2 * e + 1] / r.n
            diverged = r.guard and not (fabs(epoch_loss) <= DOUBLE_MAX
                                        and _all_finite(theta, r.n_params))
            if diverged:  # t and the outcome stay as after the last completed epoch
                r.outcome.event = DIVERGED
                r.stop = True
            else:
                r.outcome.epochs = e + 1
                r.outcome.t = t_after
                if r.plateau.patience >= 0 and _plateau_update(r.plateau, epoch_loss):
                    r.outcome.event = PLATEAU
                    r.stop = True
                elif fastmlp_monotonic() - r.started >= r.time_budget:
                    r.stop = True  # COMPLETED, with fewer epochs than asked for
        if team > 1:
            fastmlp_barrier()  # thread 0's decision is published
        if r.stop and r.outcome.event == DIVERGED:
            _keep(r, theta, tid, team, True)
            break
        t = t_after
        if r.stop:
            break


# The bundles' arrays as typed views, their addresses in a Run: one reader per bundle (the
# arrays stay alive in the bundles, which the caller holds for the call).
cdef int _read_network(Run* r, floating[::1] theta, network) except -1:
    cdef const int64_t[:, ::1] offsets = network.offsets
    cdef const int64_t[::1] sizes = network.sizes
    r.theta = &theta[0]
    r.offsets = &offsets[0, 0]
    r.sizes = &sizes[0]
    r.n_layers = offsets.shape[0]
    r.n_params = theta.shape[0]
    r.hidden, r.output, r.loss = network.hidden, network.output, network.loss
    r.slope = network.leaky_slope
    return 0


cdef int _read_data(Run* r, floating[::1] theta, data) except -1:
    cdef const floating[:, ::1] X = data.X
    cdef const floating[::1] X_values = data.X_values
    cdef const floating[:, ::1] Y = data.Y
    cdef const floating[::1] sw = data.sample_weight
    cdef const int64_t[:, ::1] orders = data.orders
    cdef size_t indices_address
    r.sparse = data.sparse
    r.X = NULL if r.sparse else &X[0, 0]
    r.X_values = &X_values[0] if X_values.shape[0] else NULL
    indices_address, r.wide_indices = _index_of(data.X_indices)
    r.X_indices = <const void*><size_t>indices_address
    indices_address, _ = _index_of(data.X_indptr)
    r.X_indptr = <const void*><size_t>indices_address
    r.Y, r.sw = &Y[0, 0], &sw[0]
    r.has_sw = data.has_sample_weight
    r.orders, r.n_orders = &orders[0, 0], orders.shape[0]
    r.n, r.n0, r.n_last = Y.shape[0], X.shape[1], Y.shape[1]
    return 0


cdef int _read_workspace(Run* r, floating[::1] theta, workspace) except -1:
    cdef floating[::1] grad = workspace.grad
    cdef floating[:, ::1] parts = workspace.parts
    cdef double[::1] part_losses = workspace.part_losses
    cdef floating[::1] acts = workspace.acts
    cdef floating[::1] deltas = workspace.deltas
    cdef floating[::1] xb = workspace.xb
    cdef floating[::1] yb = workspace.yb
    cdef floating[::1] wb = workspace.wb
    cdef floating[:, ::1] saved = workspace.saved
    r.grad, r.parts, r.part_losses = &grad[0], &parts[0, 0], &part_losses[0]
    r.n_chunks = parts.shape[0]
    r.acts, r.deltas, r.xb, r.yb, r.wb = &acts[0], &deltas[0], &xb[0], &yb[0], &wb[0]
    r.saved = &saved[0, 0]
    r.a_stride = acts.shape[0] // r.n_chunks
    r.x_stride = xb.shape[0] // r.n_chunks
    r.y_stride = yb.shape[0] // r.n_chunks
    return 0


cdef int _read_update(Run* r, floating[::1] theta, update) except -1:
    cdef const Hyper[::1] hyper = update.hyper
    cdef const double[::1] learning_rates = update.learning_rates
    cdef floating[::1] first = update.first
    cdef floating[::1] second = update.second
    r.hyper = &hyper[0]
    r.learning_rates, r.n_epochs = &learning_rates[0], learning_rates.shape[0]
    r.first, r.second = &first[0], &second[0]
    return 0


cdef int _read_control(Run* r, control) except -1:
    cdef Plateau[::1] plateau = control.plateau
    cdef Outcome[::1] outcome = control.outcome
    cdef double[:, ::1] terms = control.terms
    cdef const int64_t[::1] stop_flag = control.stop
    r.batch_size, r.min_chunk_rows = control.batch_size, control.min_chunk_rows
    r.guard = control.guard
    r.plateau, r.outcome, r.terms = &plateau[0], &outcome[0], &terms[0, 0]
    r.stop_flag = &stop_flag[0]
    r.time_budget = control.time_budget
    r.threads = control.threads
    return 0


cdef object _train_epochs(floating[::1] theta, network, data, update, workspace, control):
    """train_epochs on θ's dtype: the bundles read into a Run, then one nogil call (an
    OpenMP team when the minibatch is split)."""
    cdef Run r
    _read_network(&r, theta, network)
    _read_data(&r, theta, data)
    _read_update(&r, theta, update)
    _read_workspace(&r, theta, workspace)
    _read_control(&r, control)
    r.started = fastmlp_monotonic()
    r.stop = False
    r.outcome.epochs = 0
    r.outcome.event = COMPLETED
    if r.n_chunks > 1 and r.threads > 1:
        with nogil, parallel(num_threads=r.threads):
            _run_epochs(&r, &theta[0])
    else:
        with nogil:
            _run_epochs(&r, &theta[0])


cdef double _summed_gradient(floating[::1] theta, network, data, workspace) except? -1:
    """summed_gradient on θ's dtype: one unsplit minibatch's gather and forward and backward
    passes, without the GIL."""
    cdef Run r
    cdef double loss
    cdef Py_ssize_t nb = data.orders.shape[1]
    _read_network(&r, theta, network)
    _read_data(&r, theta, data)
    _read_workspace(&r, theta, workspace)
    with nogil:
        _gather(&r, <const floating*>r.X, r.orders, 0, nb, <floating*>r.xb, <floating*>r.yb,
                <floating*>r.wb)
        loss = _forward_backward(&r, r.orders, <floating*>r.xb, <floating*>r.yb,
                                 <floating*>r.wb, <floating*>r.acts, <floating*>r.deltas,
                                 <floating*>r.grad, nb, 0, nb, NULL)
    return loss


def summed_gradient(network, data, workspace):
    """Mirrors reference.summed_gradient over rows data.orders[0] of X, Y and the sample
    weights, gathered into the workspace as a training step gathers its minibatch, without
    the GIL: the summed gradient into workspace.grad; returns the summed loss. The
    arguments are _layout's bundles."""
    if network.theta.dtype == np.float32:
        return _summed_gradient[float](network.theta, network, data, workspace)
    return _summed_gradient[double](network.theta, network, data, workspace)


def train_epochs(network, data, update, workspace, control):
    """Mirrors reference.train_epochs: up to len(learning_rates) epochs in one call, without
    the GIL; the arguments are _layout's bundles (documented there), the outcome is written
    into control.outcome. Epoch e takes its rows in orders[e] (orders[0] every epoch if
    orders has one row) at learning rate learning_rates[e]. With workspace.parts.shape[0] > 1
    row chunks, one OpenMP team of control.threads threads (at most that many) runs all the
    epochs, or this thread alone if it is 1 (see _epoch).

    guard: before each epoch θ and the moments in use are copied to `saved`; an epoch whose
    loss or weights are not finite is undone and ends the call (event DIVERGED).
    control.plateau, updated in place, is scikit-learn's rule — the epoch loss
    (data/n)/scale + penalty/n counts as no improvement when above best − tol; more than
    `patience` in a row ends the call (event PLATEAU); patience < 0: no rule.

    control.stop (int64, one element) is read after every minibatch: once non-zero, the call
    ends there with event INTERRUPTED — the epoch under way undone if guarded (θ, moments
    and t as after the last completed epoch), else left as far as it got. No epoch starts
    after control.time_budget seconds (inf: no budget): the call ends COMPLETED early."""
    if network.theta.dtype == np.float32:
        _train_epochs[float](network.theta, network, data, update, workspace, control)
    else:
        _train_epochs[double](network.theta, network, data, update, workspace, control)


def _check_layout():
    """The declarations of _records.pxd against _layout.py: a drift fails the import."""
    from . import _layout
    declared, expected = declared_layout(), _layout.expected_layout()
    for name in expected.keys() | declared.keys():
        if declared.get(name) != expected.get(name):
            raise ImportError(f"_records.pxd declares {name} as {declared.get(name)}, but "
                              f"_layout.py defines {expected.get(name)}: rebuild after "
                              "regenerating it (_layout.pxd_text)")


_check_layout()


# -- Python-callable contract kernels (arguments already checked by _checks.py) ------------
def forward_layer(const floating[:, ::1] A, const floating[:, ::1] W, const floating[::1] b,
                  floating[:, ::1] out, int act, floating slope):
    cdef Py_ssize_t n = A.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    if n == 0:
        return
    with nogil:
        _forward(<floating*>&A[0, 0], <floating*>&W[0, 0], <floating*>&b[0], &out[0, 0], n,
                 n_in, n_out, act, slope)


def predict(const floating[::1] theta, const int64_t[:, ::1] offsets,
            const int64_t[::1] sizes, int hidden, int output, floating slope,
            const floating[:, ::1] X, floating[:, ::1] out, int64_t[::1] labels,
            int label_kind, Py_ssize_t block_rows):
    """Mirrors reference.predict: the forward pass of every layer over X's rows, the output
    layer's activations into out, and by label_kind each row's class index into labels
    (ARGMAX: the first largest output; THRESHOLD: the single output above one half). Each
    layer's products run as they would for block_rows rows, a GEMM per block_rows rows
    (_forward_as), so a batch cut at multiples of block_rows gives the bits of the whole
    (_layout.prediction_rows). Returns -2 if X holds a NaN or an inf (nothing computed),
    else the first layer whose activations are not finite — a logistic or tanh layer's input
    tested, which its activation would hide — or -1. Without the GIL; the
    hidden activations live in one buffer of two layers' rows, allocated here: concurrent
    calls share nothing."""
    cdef Py_ssize_t n = X.shape[0], last = offsets.shape[0] - 1, widest = 1
    cdef Py_ssize_t l, i, j, best, n_in, n_out, overflow = -1
    cdef int act
    cdef bint saturates
    cdef floating* buffer
    cdef floating* src
    cdef floating* dst
    cdef floating* W = <floating*>&theta[0]
    if n == 0:
        return -1
    cdef bint finite
    with nogil:
        finite = _all_finite(<floating*>&X[0, 0], n * X.shape[1])
    if not finite:
        return -2
    for l in range(1, last + 1):
        widest = max(widest, sizes[l])
    buffer = <floating*>malloc(<size_t>(2 * n * widest) * sizeof(floating)) if last else NULL
    if last and buffer == NULL:
        raise MemoryError(f"no memory for the hidden activations of {n} rows")
    with nogil:
        src = <floating*>&X[0, 0]
        for l in range(last + 1):
            n_in, n_out = sizes[l], sizes[l + 1]
            act = output if l == last else hidden
            saturates = act == LOGISTIC or act == TANH
            dst = &out[0, 0] if l == last else buffer + (l % 2) * n * widest
            if n == 1 and block_rows * n_in * n_out >= SMALL_WORK:  # numba's np.dot: gemv
                _row_times(src, W + offsets[l, 0], dst, n_in, n_out)
                _bias_activate(dst, W + offsets[l, 1], 0, 1, n_out,
                               IDENTITY if saturates else act, slope)
            else:
                _forward_as(src, W + offsets[l, 0], W + offsets[l, 1], dst, n, n_in, n_out,
                            IDENTITY if saturates else act, slope, block_rows, block_rows)
            if overflow < 0 and not _all_finite(dst, n * n_out):
                overflow = l
            if saturates:  # the bias is in: the activation apart, its input tested above
                for i in range(n):
                    _activate_row(dst + i * n_out, n_out, act, slope)
            src = dst
        if label_kind == ARGMAX:
            for i in range(n):
                best = 0
                for j in range(1, out.shape[1]):
                    if out[i, j] > out[i, best]:
                        best = j
                labels[i] = best
        elif label_kind == THRESHOLD:
            for i in range(n):
                labels[i] = 1 if out[i, 0] > 0.5 else 0
    free(buffer)
    return overflow


def backward_layer(const floating[:, ::1] A, const floating[:, ::1] delta,
                   const floating[:, ::1] W, floating[:, ::1] grad_W, floating[::1] grad_b,
                   floating[:, ::1] delta_in, int act_in, floating slope, bint want):
    cdef Py_ssize_t n = A.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    cdef floating* d_in = &delta_in[0, 0] if want else NULL
    if n == 0:
        grad_W[:, :] = 0
        grad_b[:] = 0
        return
    with nogil:
        _backward(<floating*>&A[0, 0], <floating*>&delta[0, 0], <floating*>&W[0, 0],
                  &grad_W[0, 0], &grad_b[0], d_in, n, n_in, n_out, act_in, slope, NULL, NULL)


cdef tuple _index_of(index):
    """(address, wide) of a CSR input's int32 or int64 index array (0 when empty)."""
    cdef const int64_t[::1] wide
    cdef const int32_t[::1] narrow
    if index.dtype == np.int64:
        wide = index
        return (<size_t>&wide[0] if wide.shape[0] else 0), True
    narrow = index
    return (<size_t>&narrow[0] if narrow.shape[0] else 0), False


def sparse_forward_layer(const floating[::1] values, indices, indptr,
                         const int64_t[::1] rows,
                         const floating[:, ::1] W, const floating[::1] b,
                         floating[:, ::1] out, int act, floating slope):
    cdef Py_ssize_t n = rows.shape[0]
    cdef size_t address, pointers
    cdef bint wide
    if n == 0:
        return
    address, wide = _index_of(indices)
    pointers, _ = _index_of(indptr)
    with nogil:
        _sparse_forward(&values[0] if values.shape[0] else NULL,
                        <const void*>address, wide, <const void*>pointers, &rows[0], n,
                        <floating*>&W[0, 0], <floating*>&b[0], &out[0, 0], W.shape[1], act,
                        slope)


def sparse_weight_gradient(const floating[::1] values, indices, indptr,
                           const int64_t[::1] rows,
                           const floating[:, ::1] delta, floating[:, ::1] grad_W,
                           floating[::1] grad_b):
    cdef Py_ssize_t n = rows.shape[0]
    cdef size_t address, pointers
    cdef bint wide
    if n == 0:
        grad_W[:, :] = 0
        grad_b[:] = 0
        return
    address, wide = _index_of(indices)
    pointers, _ = _index_of(indptr)
    with nogil:
        _sparse_gradient(&values[0] if values.shape[0] else NULL,
                         <const void*>address, wide, <const void*>pointers, &rows[0], n,
                         <floating*>&delta[0, 0], &grad_W[0, 0], &grad_b[0], grad_W.shape[0],
                         grad_W.shape[1], False)


def output_delta(const floating[:, ::1] A, const floating[:, ::1] Y, floating[:, ::1] delta,
                 const floating[::1] sw, int act, int loss, bint has_sw, floating slope,
                 floating tiny):
    cdef Py_ssize_t n = A.shape[0], m = A.shape[1]
    cdef double total
    if n == 0:
        return 0.0
    with nogil:
        total = _output_delta(<floating*>&A[0, 0], <floating*>&Y[0, 0], &delta[0, 0],
                              <floating*>&sw[0], n, m, act, loss, has_sw, slope, tiny, NULL)
    return total
