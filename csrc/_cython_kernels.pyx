# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""fastmlp's Cython backend: the reference kernel contract compiled ahead of time.

Twin of fastmlp/backends/numba_kernels.py, function for function (each says which
reference function it mirrors). GEMMs come from scipy.linalg.cython_blas (SciPy's BLAS);
everything else runs without the GIL, the whole epoch included. The arrays reaching these
functions have been checked by fastmlp/backends/_contract.py (shapes, dtypes, contiguity),
so bounds checks are off.

Row-major products through column-major BLAS: a C-ordered (r, c) matrix is the
column-major (c, r) matrix of its transpose, so
    out = A @ W      is  gemm('N', 'N', n_out, n, n_in,  W, A)
    gW  = Aᵀ @ δ     is  gemm('N', 'T', n_out, n_in, n,  δ, A)
    δin = δ @ Wᵀ     is  gemm('T', 'N', n_in, n, n_out,  W, δ)
"""
from cython cimport floating
from cython.parallel cimport parallel
from libc.float cimport DBL_MAX as DOUBLE_MAX, FLT_MAX
from libc.math cimport exp, expf, fabs, fabsf, log, logf, sqrt, sqrtf, tanh
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport ddot, dgemm, sdot, sgemm

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

# The timed phases (PHASES below names them).
cdef enum:
    PHASE_GATHER = 0
    PHASE_FORWARD_BACKWARD = 1
    PHASE_GEMM = 2
    PHASE_WAIT_GRADIENTS = 3
    PHASE_UPDATE = 4
    PHASE_WAIT_UPDATE = 5
    PHASE_EPOCH = 6

# Activation / loss codes: fastmlp.activations.CODES, fastmlp.losses.CODES.
cdef enum:
    IDENTITY = 0
    LOGISTIC = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    SOFTMAX = 5
cdef enum:
    SQUARED_ERROR = 0
    CROSS_ENTROPY = 1
    BINARY_CROSS_ENTROPY = 2

# train_epochs' events: fastmlp.backends._contract.EVENTS.
cdef enum:
    COMPLETED = 0
    PLATEAU = 1
    DIVERGED = 2

# Same size rules as the numba backend (see there for the measurements).
cdef enum:
    SMALL_WORK = 1024
    # δ Wᵀ through a transposed copy of W when W is at most NARROW_OUT wide, NARROW_WORDS big
    NARROW_OUT = 16
    NARROW_WORDS = 4096
    BLOCK_BYTES = 1048576
    MIN_BLOCK_ROWS = 256


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


cdef inline void _gemm(char transa, char transb, int m, int n, int k, floating* a, int lda,
                       floating* b, int ldb, floating* c, int ldc) noexcept nogil:
    cdef floating one = 1
    cdef floating zero = 0
    cdef double since = fastmlp_clock()
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc)
    fastmlp_phase_add(PHASE_GEMM, since)


cdef inline double _squared_norm(floating* x, long n) noexcept nogil:
    """Σ x² through BLAS dot (a plain loop would be a latency-bound serial reduction)."""
    cdef int inc = 1, m = <int>n
    if floating is float:
        return sdot(&m, x, &inc, x, &inc)
    else:
        return ddot(&m, x, &inc, x, &inc)


cdef inline int _block_rows(int n_cols, int itemsize) noexcept nogil:
    cdef long rows = BLOCK_BYTES // (n_cols * itemsize if n_cols * itemsize > 0 else 1)
    return <int>(rows if rows > MIN_BLOCK_ROWS else MIN_BLOCK_ROWS)


# -- elementwise pieces ----------------------------------------------------------------------
cdef inline floating _exp(floating x) noexcept nogil:
    """exp in the argument's precision (expf for float32: no round trip through double)."""
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef void _activate_row(floating* z, int n, int act, floating slope) noexcept nogil:
    """Mirrors activations.activate on one row, in place."""
    cdef int j
    cdef double e
    if act == LOGISTIC:
        for j in range(n):
            e = exp(-fabs(z[j]))
            z[j] = <floating>((1.0 if z[j] >= 0 else e) / (1.0 + e))
    elif act == TANH:
        for j in range(n):
            z[j] = <floating>tanh(z[j])
    elif act == RELU:
        for j in range(n):
            if z[j] < 0:
                z[j] = 0
    elif act == LEAKY_RELU:
        for j in range(n):
            if z[j] < 0:
                z[j] = z[j] * slope


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


cdef void _bias_softmax_rows(floating* z, floating* b, int rows, int n) noexcept nogil:
    """z += b, then activations.softmax on `rows` rows of n, in θ's dtype: z - row max, exp,
    / row sum. The bias, max and shift are one pass per row; the exp runs as one loop over
    the whole block, so it vectorises."""
    cdef int i, j
    cdef long k
    cdef floating top, total
    cdef floating* row
    for i in range(rows):
        row = z + <long>i * n
        for j in range(n):
            row[j] = row[j] + b[j]
        top = row[0]
        for j in range(1, n):
            top = row[j] if row[j] > top else top
        for j in range(n):
            row[j] = row[j] - top
    for k in range(<long>rows * n):
        z[k] = _exp(z[k])
    for i in range(rows):
        row = z + <long>i * n
        total = 0
        for j in range(n):
            total += row[j]
        for j in range(n):
            row[j] = row[j] / total


cdef void _bias_activate(floating* out, floating* b, int r0, int r1, int n_out, int act,
                         floating slope) noexcept nogil:
    """Epilogue of the forward pass on rows r0:r1: out += b, then out = g(out)."""
    cdef int i, j
    cdef floating* row
    cdef floating v
    if act == RELU:  # fused, one pass (the common hidden layer)
        for i in range(r0, r1):
            row = out + <long>i * n_out
            for j in range(n_out):
                v = row[j] + b[j]
                row[j] = 0 if v < 0 else v
        return
    if act == SOFTMAX:
        _bias_softmax_rows(out + <long>r0 * n_out, b, r1 - r0, n_out)
        return
    for i in range(r0, r1):
        row = out + <long>i * n_out
        for j in range(n_out):
            row[j] += b[j]
        if act != IDENTITY:
            _activate_row(row, n_out, act, slope)


cdef void _times_derivative(floating* d, floating* a, int r0, int r1, int n, int act,
                            floating slope) noexcept nogil:
    """Epilogue of the backward pass on rows r0:r1: δ_in *= g'(A_in) (from the output A)."""
    cdef long k, lo = <long>r0 * n, hi = <long>r1 * n
    if act == LOGISTIC:
        for k in range(lo, hi):
            d[k] *= a[k] * (1 - a[k])
    elif act == TANH:
        for k in range(lo, hi):
            d[k] *= 1 - a[k] * a[k]
    elif act == RELU:
        for k in range(lo, hi):
            d[k] *= (1 if a[k] > 0 else 0)
    elif act == LEAKY_RELU:
        for k in range(lo, hi):
            d[k] *= (1 if a[k] > 0 else slope)


# -- layer kernels ---------------------------------------------------------------------------
cdef void _forward(floating* A, floating* W, floating* b, floating* out, int n, int n_in,
                   int n_out, int act, floating slope) noexcept nogil:
    """Mirrors reference.forward_layer: out = g(A @ W + b)."""
    cdef int i, j, k, r0, r1, block
    cdef floating a
    cdef floating* row
    if <long>n * n_in * n_out < SMALL_WORK:
        for i in range(n):
            row = out + <long>i * n_out
            for j in range(n_out):
                row[j] = 0
            for k in range(n_in):
                a = A[<long>i * n_in + k]
                for j in range(n_out):
                    row[j] += a * W[<long>k * n_out + j]
        _bias_activate(out, b, 0, n, n_out, act, slope)
        return
    block = _block_rows(n_out, sizeof(floating))
    r0 = 0
    while r0 < n:
        r1 = r0 + block if r0 + block < n else n
        _gemm(c'N', c'N', n_out, r1 - r0, n_in, W, n_out, A + <long>r0 * n_in, n_in,
              out + <long>r0 * n_out, n_out)
        _bias_activate(out, b, r0, r1, n_out, act, slope)
        r0 = r1


cdef void _derivative_and_sum(floating* d, floating* a, int r0, int r1, int n, int act,
                              floating slope, floating* sums) noexcept nogil:
    """_times_derivative on rows r0:r1; with sums, each finished row is also added into sums
    while it is in L1 (Σ_rows δ_in: the bias gradient of the layer below, rows in order)."""
    cdef int i, j
    cdef floating* row
    cdef floating* arow
    if sums == NULL:
        _times_derivative(d, a, r0, r1, n, act, slope)
        return
    for i in range(r0, r1):
        row = d + <long>i * n
        if act == RELU:  # the usual hidden layer: one fused, vectorised loop
            arow = a + <long>i * n
            for j in range(n):
                row[j] *= (1 if arow[j] > 0 else 0)
                sums[j] += row[j]
        else:
            _times_derivative(d, a, i, i + 1, n, act, slope)
            for j in range(n):
                sums[j] += row[j]


cdef void _backward(floating* A, floating* delta, floating* W, floating* gW, floating* gb,
                    floating* delta_in, int n, int n_in, int n_out, int act_in,
                    floating slope, bint want_delta_in, bint gb_ready,
                    floating* gb_in) noexcept nogil:
    """Mirrors reference.backward_layer: gW = Aᵀδ, gb = Σ_rows δ, δ_in = (δWᵀ) ⊙ g'(A).

    gb_ready: gb already holds Σ_rows δ (summed by the layer above as it made δ). gb_in (or
    NULL): where to sum δ_in's rows, i.e. the layer below's bias gradient, in the same pass."""
    cdef int i, j, k, r0, r1, block
    cdef floating a, s
    cdef floating wt[NARROW_WORDS]
    cdef bint narrow
    if not gb_ready:
        for j in range(n_out):
            gb[j] = 0
        for i in range(n):
            for j in range(n_out):
                gb[j] += delta[<long>i * n_out + j]
    if want_delta_in and gb_in != NULL:
        for k in range(n_in):
            gb_in[k] = 0
    if <long>n * n_in * n_out < SMALL_WORK:
        for k in range(<long>n_in * n_out):
            gW[k] = 0
        for i in range(n):
            for k in range(n_in):
                a = A[<long>i * n_in + k]
                for j in range(n_out):
                    gW[<long>k * n_out + j] += a * delta[<long>i * n_out + j]
        if want_delta_in:
            for i in range(n):
                for k in range(n_in):
                    s = 0
                    for j in range(n_out):
                        s = s + delta[<long>i * n_out + j] * W[<long>k * n_out + j]
                    delta_in[<long>i * n_in + k] = s
            _derivative_and_sum(delta_in, A, 0, n, n_in, act_in, slope, gb_in)
        return
    _gemm(c'N', c'T', n_out, n_in, n, delta, n_out, A, n_in, gW, n_out)
    if want_delta_in:
        # A narrow δ (a classifier's output layer): Wᵀ copied to the stack turns δWᵀ into a
        # gemm('N', 'N'), which OpenBLAS runs 1.1-1.35x faster than gemm('T', 'N') on W at
        # 100-200 rows x 100 x 10, copy included (`python bench/crossover.py`).
        narrow = n_out <= NARROW_OUT and n_in * n_out <= NARROW_WORDS
        if narrow:
            for j in range(n_out):
                for k in range(n_in):
                    wt[j * n_in + k] = W[<long>k * n_out + j]
        block = _block_rows(n_in, sizeof(floating))
        r0 = 0
        while r0 < n:
            r1 = r0 + block if r0 + block < n else n
            if narrow:
                _gemm(c'N', c'N', n_in, r1 - r0, n_out, wt, n_in, delta + <long>r0 * n_out,
                      n_out, delta_in + <long>r0 * n_in, n_in)
            else:
                _gemm(c'T', c'N', n_in, r1 - r0, n_out, W, n_out, delta + <long>r0 * n_out,
                      n_out, delta_in + <long>r0 * n_in, n_in)
            _derivative_and_sum(delta_in, A, r0, r1, n_in, act_in, slope, gb_in)
            r0 = r1


cdef double _softmax_cross_entropy_delta(floating* Y_out, floating* R, floating* D, floating* w,
                                        int n, int m, bint has_sw, floating tiny,
                                        floating* gb) noexcept nogil:
    """_output_delta for the usual classifier, softmax + cross-entropy: per row
    L = -Σ r ln max(y, tiny) and δ = y Σr - r, in θ's dtype as the reference computes them.
    The logs of the whole block come first, as one loop that vectorises, into D (each row
    reads them before writing its δ there); the rows then run without a branch on r (a term
    with r = 0 adds an exact 0: the log is finite)."""
    cdef int i, j
    cdef long k
    cdef double total = 0.0
    cdef floating li, s
    cdef floating* y
    cdef floating* r
    cdef floating* d
    for k in range(<long>n * m):
        D[k] = _log(Y_out[k] if Y_out[k] > tiny else tiny)
    for i in range(n):
        y = Y_out + <long>i * m
        r = R + <long>i * m
        d = D + <long>i * m
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


cdef double _output_delta(floating* Y_out, floating* R, floating* D, floating* w, int n,
                          int m, int act, int loss, bint has_sw, floating slope,
                          floating tiny, floating* gb) noexcept nogil:
    """Mirrors reference.output_delta: δ_out into D, returns Σ_i w_i L_i (double). With gb
    (or NULL): Σ_rows δ_out into it, row by row as each δ row is made (the output layer's
    bias gradient, in the order _backward would sum it)."""
    cdef int i, j
    cdef long k
    cdef double total = 0.0, li, s
    cdef floating* y
    cdef floating* r
    cdef floating* d
    if gb != NULL:
        for j in range(m):
            gb[j] = 0
    if act == SOFTMAX and loss == CROSS_ENTROPY:
        return _softmax_cross_entropy_delta(Y_out, R, D, w, n, m, has_sw, tiny, gb)
    for i in range(n):
        y = Y_out + <long>i * m
        r = R + <long>i * m
        d = D + <long>i * m
        li = 0.0
        for j in range(m):  # a term whose target factor is 0 adds exactly 0: skipped
            if loss == SQUARED_ERROR:
                li += 0.5 * (y[j] - r[j]) * (y[j] - r[j])
            elif loss == CROSS_ENTROPY:
                if r[j] != 0:
                    li -= r[j] * log(y[j] if y[j] > tiny else tiny)
            else:
                if r[j] != 0:
                    li -= r[j] * log(y[j] if y[j] > tiny else tiny)
                if r[j] != 1:
                    li -= (1 - r[j]) * log((1 - y[j]) if (1 - y[j]) > tiny else tiny)
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
        else:
            for j in range(m):
                d[j] = y[j] - r[j]
            _times_derivative(d, y, 0, 1, m, act, slope)
        if has_sw:
            for j in range(m):
                d[j] = d[j] * w[i]
            li *= w[i]
        if gb != NULL:
            for j in range(m):
                gb[j] += d[j]
        total += li
    return total


# -- the compiled epoch ----------------------------------------------------------------------
cdef inline floating _summed(floating* g0, floating* g1, long p) noexcept nogil:
    """The raw gradient: g0[p], or g0[p] + g1[p] for two threads' buffers (the loop tests
    g1 once: gcc unswitches it)."""
    return g0[p] + g1[p] if g1 != NULL else g0[p]


cdef void _update(floating* theta, floating* g0, floating* g1, floating* first,
                  floating* second, long lo, long hi, floating l2, floating* hyper, bint sgd,
                  bint nesterov) noexcept nogil:
    """Mirrors reference.minibatch_step's tail and optim.step on θ[lo:hi], the raw gradient
    being g0 (+ g1): summing the threads' buffers here saves a pass over them."""
    cdef long p
    cdef floating g, v, m, s
    cdef floating lr = hyper[0], momentum = hyper[1], wsum = hyper[9]
    cdef floating b1 = hyper[3], omb1 = hyper[4], b2 = hyper[5], omb2 = hyper[6]
    cdef floating eps = hyper[7], step = hyper[8]
    if sgd and momentum == 0 and not nesterov:
        for p in range(lo, hi):
            theta[p] -= lr * ((_summed(g0, g1, p) + l2 * theta[p]) / wsum)
    elif sgd and not nesterov:
        for p in range(lo, hi):
            g = (_summed(g0, g1, p) + l2 * theta[p]) / wsum
            v = momentum * first[p] - lr * g
            first[p] = v
            theta[p] += v
    elif sgd:
        for p in range(lo, hi):
            g = (_summed(g0, g1, p) + l2 * theta[p]) / wsum
            v = momentum * first[p] - lr * g
            first[p] = v
            theta[p] += momentum * v - lr * g
    else:
        for p in range(lo, hi):
            g = (_summed(g0, g1, p) + l2 * theta[p]) / wsum
            m = b1 * first[p] + omb1 * g
            s = b2 * second[p] + omb2 * g * g
            first[p] = m
            second[p] = s
            theta[p] -= step * m / (_sqrt(s) + eps)


cdef double _forward_backward(floating* theta, long[:, ::1] offsets, long[::1] sizes,
                              int hidden, int output, int loss, floating slope, floating tiny,
                              floating* xb, floating* yb, floating* wb, bint has_sw,
                              floating* acts, floating* deltas, floating* grad, int nb, int r0,
                              int r1) noexcept nogil:
    """Mirrors numba_kernels._forward_backward: rows r0:r1 of a gathered minibatch of nb."""
    cdef int n_layers = offsets.shape[0], l, n_in, n_out, rows = r1 - r0
    cdef int n0 = sizes[0], n_last = sizes[n_layers]
    cdef long pos = 0, prev = 0
    cdef floating* a_in = xb + <long>r0 * n0
    cdef double batch_loss
    for l in range(n_layers):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        _forward(a_in, theta + offsets[l, 0], theta + offsets[l, 1],
                 acts + pos + <long>r0 * n_out, rows, n_in, n_out,
                 output if l == n_layers - 1 else hidden, slope)
        a_in = acts + pos + <long>r0 * n_out
        pos += <long>nb * n_out
    pos -= <long>nb * n_last
    # every layer's bias gradient is summed as its δ is made: the output layer's here, a
    # hidden layer's by the layer above it
    batch_loss = _output_delta(a_in, yb + <long>r0 * n_last, deltas + pos + <long>r0 * n_last,
                               wb + r0, rows, n_last, output, loss, has_sw, slope, tiny,
                               grad + offsets[n_layers - 1, 1])
    for l in range(n_layers - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        if l > 0:
            prev = pos - <long>nb * n_in
            _backward(acts + prev + <long>r0 * n_in, deltas + pos + <long>r0 * n_out,
                      theta + offsets[l, 0], grad + offsets[l, 0], grad + offsets[l, 1],
                      deltas + prev + <long>r0 * n_in, rows, n_in, n_out, hidden, slope, True,
                      True, grad + offsets[l - 1, 1])
            pos = prev
        else:
            _backward(xb + <long>r0 * n0, deltas + pos + <long>r0 * n_out,
                      theta + offsets[l, 0], grad + offsets[l, 0], grad + offsets[l, 1],
                      NULL, rows, n_in, n_out, hidden, slope, False, True, NULL)
    return batch_loss


cdef inline long _slice_start(int c, int n_chunks, long n_params) noexcept nogil:
    """Where thread-slice c of θ starts (64-byte aligned; slice c is [start(c), start(c+1)))."""
    return n_params if c == n_chunks else (c * n_params // n_chunks) // 16 * 16


cdef void _update_slice(floating* theta, floating* g0, floating* g1, floating* first,
                        floating* second, long lo, long hi, long[:, ::1] offsets,
                        long[::1] sizes, floating* hyper, bint sgd, bint nesterov) noexcept nogil:
    """_update on θ[lo:hi], layer by layer: L2 on the weights, none on the biases."""
    cdef int l
    cdef long w0, b0, b1
    cdef floating zero = 0
    for l in range(offsets.shape[0]):
        w0 = offsets[l, 0]
        b0 = offsets[l, 1]
        b1 = b0 + sizes[l + 1]
        if w0 < lo:
            w0 = lo
        if b0 > hi:
            b0 = hi
        if w0 < b0:
            _update(theta, g0, g1, first, second, w0, b0, hyper[2], hyper, sgd, nesterov)
        b0 = offsets[l, 1]
        if b0 < lo:
            b0 = lo
        if b1 > hi:
            b1 = hi
        if b0 < b1:
            _update(theta, g0, g1, first, second, b0, b1, zero, hyper, sgd, nesterov)


cdef void _gather(const floating[:, ::1] X, const floating[:, ::1] Y, const floating[::1] sw,
                  const long[::1] order, int first, int rows, floating* xb, floating* yb,
                  floating* wb) noexcept nogil:
    """Rows order[first : first + rows] of X, Y, sw into the first rows of xb, yb, wb."""
    cdef int r, j, n0 = X.shape[1], n_last = Y.shape[1]
    cdef long src
    for r in range(rows):
        src = order[first + r]
        for j in range(n0):
            xb[<long>r * n0 + j] = X[src, j]
        for j in range(n_last):
            yb[<long>r * n_last + j] = Y[src, j]
        wb[r] = sw[src]


cdef long _epoch(floating[::1] theta, long[:, ::1] offsets, long[::1] sizes, int hidden,
                int output, int loss, floating slope, floating tiny, const floating[:, ::1] X,
                const floating[:, ::1] Y, const floating[::1] sw, bint has_sw,
                const long[::1] order, int batch_size, bint sgd, bint nesterov,
                const floating[::1] hyper, floating lr, double beta_1, double beta_2, long t,
                floating[::1] first, floating[::1] second, floating[::1] grad,
                floating[:, ::1] parts, double[::1] part_losses, int min_chunk_rows,
                floating[::1] acts, floating[::1] deltas, floating[::1] xb, floating[::1] yb,
                floating[::1] wb, double* terms, int tid, int team) noexcept nogil:
    """Mirrors reference._epoch: one pass over the rows in `order` at learning rate lr, run
    by every thread of a team of `team` (this one: tid; a team of 1 runs it all). Thread 0
    writes (Σ mean loss·rows, Σ mean L2 penalty·rows) into terms. Returns Adam's step count.

    A minibatch of at least n_chunks·min_chunk_rows rows is data-parallel: chunk c (a row
    block, its own gradient buffer parts[c]) and then slice c of the update belong to thread
    c mod team, so the results depend on the chunk count, never on the team. Two barriers per
    minibatch replace two fork/joins (numba's twin, which has no barrier, forks per phase).
    Chunk c's rows of xb, yb, acts and deltas are a region of their own (the buffers hold
    n_chunks regions, a gap apart: see _compiled.Workspace); wb stays in minibatch order.
    With both chunks' rows side by side in one minibatch-ordered buffer, the second chunk's
    forward epilogue took ~1.5x the first's (float64 digits, per-phase timers during
    development); `python bench/phases.py` shows the two threads' phases side by side."""
    cdef int n = X.shape[0], n_layers = offsets.shape[0]
    cdef int n_chunks = parts.shape[0]
    cdef int start, nb, r, c, l, r0, r1, n0 = X.shape[1], n_last = Y.shape[1]
    cdef long p, w0, lo, hi, n_params = theta.shape[0]
    cdef long a_stride = acts.shape[0] // n_chunks, x_stride = xb.shape[0] // n_chunks
    cdef long y_stride = yb.shape[0] // n_chunks
    cdef bint split
    cdef double weight_sum, batch_loss = 0.0, squared_norm
    cdef floating l2 = hyper[2]
    cdef double since
    cdef floating h[10]  # this thread's hyper: [0] = lr, [8] = Adam's step, [9] = Σ weights
    for r in range(10):
        h[r] = hyper[r]
    h[0] = lr
    if tid == 0:
        terms[0] = 0.0
        terms[1] = 0.0
    start = 0
    while start < n:
        nb = batch_size if start + batch_size <= n else n - start
        split = n_chunks > 1 and nb >= n_chunks * min_chunk_rows
        if split:
            c = tid
            while c < n_chunks:  # chunks tid, tid + team, ...
                r0 = c * nb // n_chunks
                r1 = (c + 1) * nb // n_chunks
                since = fastmlp_clock()
                _gather(X, Y, sw, order, start + r0, r1 - r0, &xb[c * x_stride],
                        &yb[c * y_stride], &wb[r0])
                fastmlp_phase_add(PHASE_GATHER, since)
                since = fastmlp_clock()
                part_losses[c] = _forward_backward(
                    &theta[0], offsets, sizes, hidden, output, loss, slope, tiny,
                    &xb[c * x_stride], &yb[c * y_stride], &wb[r0], has_sw,
                    &acts[c * a_stride], &deltas[c * a_stride], &parts[c, 0], r1 - r0, 0,
                    r1 - r0)
                fastmlp_phase_add(PHASE_FORWARD_BACKWARD, since)
                c += team
        elif tid == 0:
            since = fastmlp_clock()
            _gather(X, Y, sw, order, start, nb, &xb[0], &yb[0], &wb[0])
            fastmlp_phase_add(PHASE_GATHER, since)
            since = fastmlp_clock()
            batch_loss = _forward_backward(&theta[0], offsets, sizes, hidden, output, loss,
                                           slope, tiny, &xb[0], &yb[0], &wb[0], has_sw,
                                           &acts[0], &deltas[0], &grad[0], nb, 0, nb)
            fastmlp_phase_add(PHASE_FORWARD_BACKWARD, since)
        squared_norm = 0.0  # of the weights before this step's update (none is written yet)
        if tid == 0 and l2 != 0:
            for l in range(n_layers):
                w0 = offsets[l, 0]
                squared_norm += _squared_norm(&theta[w0], offsets[l, 1] - w0)
        since = fastmlp_clock()
        if team > 1:
            fastmlp_barrier()  # every chunk's gradient and rows are in
        fastmlp_phase_add(PHASE_WAIT_GRADIENTS, since)
        since = fastmlp_clock()
        weight_sum = 0.0  # every thread: the same sum, the same step size
        for r in range(nb):
            weight_sum += wb[r] if has_sw else 1.0
        h[9] = <floating>weight_sum
        if not sgd:
            t += 1
            h[8] = <floating>(h[0] * sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t))
        if split:
            # slices of θ 64-byte aligned; each sums its slice of the gradient buffers in
            # the fixed order 0..C-1, then updates it
            c = tid
            while c < n_chunks:
                lo = _slice_start(c, n_chunks, n_params)
                hi = _slice_start(c + 1, n_chunks, n_params)
                if n_chunks == 2:  # summed inside the update, in the same order
                    _update_slice(&theta[0], &parts[0, 0], &parts[1, 0], &first[0],
                                  &second[0], lo, hi, offsets, sizes, h, sgd, nesterov)
                else:
                    for p in range(lo, hi):
                        grad[p] = parts[0, p]
                    for r in range(1, n_chunks - 1):
                        for p in range(lo, hi):
                            grad[p] += parts[r, p]
                    _update_slice(&theta[0], &grad[0], &parts[n_chunks - 1, 0], &first[0],
                                  &second[0], lo, hi, offsets, sizes, h, sgd, nesterov)
                c += team
        elif tid == 0:
            _update_slice(&theta[0], &grad[0], NULL, &first[0], &second[0], 0, n_params,
                          offsets, sizes, h, sgd, nesterov)
        if tid == 0:
            if split:
                batch_loss = part_losses[0]
                for c in range(1, n_chunks):
                    batch_loss += part_losses[c]
            terms[0] += batch_loss / weight_sum * nb
            terms[1] += 0.5 * l2 * squared_norm / weight_sum * nb
        fastmlp_phase_add(PHASE_UPDATE, since)
        since = fastmlp_clock()
        if team > 1:
            fastmlp_barrier()  # θ is updated before the next minibatch's forward pass
        fastmlp_phase_add(PHASE_WAIT_UPDATE, since)
        start += nb
    return t


cdef bint _all_finite(floating* x, long n) noexcept nogil:
    cdef long p
    cdef int bad = 0
    # an integer OR reduction: vectorises without reordering float sums
    if floating is float:
        for p in range(n):
            bad |= not (fabsf(x[p]) <= FLT_MAX)
    else:
        for p in range(n):
            bad |= not (fabs(x[p]) <= DOUBLE_MAX)
    return not bad


cdef bint _plateau_update(double[::1] plateau, double loss) noexcept nogil:
    """Mirrors stopping.Plateau.update on its array form [tol, patience, best, count, scale]:
    records one epoch's loss, True when it completes a plateau."""
    if loss > plateau[2] - plateau[0]:
        plateau[3] += 1
    else:
        plateau[3] = 0
    if loss < plateau[2]:
        plateau[2] = loss
    return plateau[3] > plateau[1]


cdef void _run_epochs(floating[::1] theta, long[:, ::1] offsets, long[::1] sizes, int hidden,
                      int output, int loss, floating slope, floating tiny,
                      const floating[:, ::1] X, const floating[:, ::1] Y,
                      const floating[::1] sw, bint has_sw, const long[:, ::1] orders,
                      int batch_size, bint sgd, bint nesterov, const floating[::1] hyper,
                      const double[::1] learning_rates, double beta_1, double beta_2,
                      floating[::1] first, floating[::1] second, floating[::1] grad,
                      floating[:, ::1] parts, double[::1] part_losses, int min_chunk_rows,
                      floating[::1] acts, floating[::1] deltas, floating[::1] xb,
                      floating[::1] yb, floating[::1] wb, floating[:, ::1] saved, bint guard,
                      double[::1] plateau, double[:, ::1] terms, long* shared) noexcept nogil:
    """train_epochs' loop, run by every thread of the team. Thread 0 alone keeps the
    snapshot, applies the guard and the plateau rule, and publishes its decision in shared
    = [t, epochs completed, event, stop], which the team reads after a barrier."""
    cdef int tid = fastmlp_thread_num(), team = fastmlp_team_size()
    cdef int n = X.shape[0], n_epochs = learning_rates.shape[0], e, event = COMPLETED, row
    cdef long n_params = theta.shape[0], t = shared[0], t_before = shared[0]
    cdef bint keep_first = not (sgd and hyper[1] == 0 and not nesterov), keep_second = not sgd
    cdef int n_chunks = parts.shape[0], c
    cdef long lo, hi
    cdef double epoch_loss, since
    for e in range(n_epochs):
        if guard:
            # the snapshot, θ being only read until the epoch's first barrier: each thread
            # copies the slices it updates (still in its cache from the last update)
            t_before = t
            c = tid
            while c < n_chunks:
                lo = _slice_start(c, n_chunks, n_params)
                hi = _slice_start(c + 1, n_chunks, n_params)
                memcpy(&saved[0, lo], &theta[lo], (hi - lo) * sizeof(floating))
                if keep_first:
                    memcpy(&saved[1, lo], &first[lo], (hi - lo) * sizeof(floating))
                if keep_second:
                    memcpy(&saved[2, lo], &second[lo], (hi - lo) * sizeof(floating))
                c += team
        row = e if orders.shape[0] > 1 else 0
        since = fastmlp_clock()
        t = _epoch(theta, offsets, sizes, hidden, output, loss, slope, tiny, X, Y, sw, has_sw,
                   orders[row], batch_size, sgd, nesterov, hyper,
                   <floating>learning_rates[e], beta_1, beta_2, t, first, second, grad,
                   parts, part_losses, min_chunk_rows, acts, deltas, xb, yb, wb,
                   &terms[e, 0], tid, team)
        fastmlp_phase_add(PHASE_EPOCH, since)
        if tid == 0:
            shared[1] = e + 1
            epoch_loss = terms[e, 0] / n / plateau[4] + terms[e, 1] / n
            if guard and not (fabs(epoch_loss) <= DOUBLE_MAX
                              and _all_finite(&theta[0], n_params)):
                memcpy(&theta[0], &saved[0, 0], n_params * sizeof(floating))
                if keep_first:
                    memcpy(&first[0], &saved[1, 0], n_params * sizeof(floating))
                if keep_second:
                    memcpy(&second[0], &saved[2, 0], n_params * sizeof(floating))
                t = t_before
                shared[1] = e
                shared[2] = DIVERGED
                shared[3] = 1
            elif plateau[1] >= 0 and _plateau_update(plateau, epoch_loss):
                shared[2] = PLATEAU
                shared[3] = 1
            shared[0] = t
        if team > 1:
            fastmlp_barrier()  # thread 0's decision (and any restored θ) is published
        if shared[3]:
            break


def train_epochs(floating[::1] theta, long[:, ::1] offsets, long[::1] sizes, int hidden,
                 int output, int loss, floating slope, floating tiny, const floating[:, ::1] X,
                 const floating[:, ::1] Y, const floating[::1] sw, bint has_sw,
                 const long[:, ::1] orders, int batch_size, bint sgd, bint nesterov,
                 const floating[::1] hyper, const double[::1] learning_rates, double beta_1,
                 double beta_2, long t, floating[::1] first, floating[::1] second,
                 floating[::1] grad, floating[:, ::1] parts, double[::1] part_losses,
                 int min_chunk_rows, floating[::1] acts, floating[::1] deltas,
                 floating[::1] xb, floating[::1] yb, floating[::1] wb, floating[:, ::1] saved,
                 bint guard, double[::1] plateau, double[:, ::1] terms):
    """Mirrors reference.train_epochs: up to len(learning_rates) epochs in one call, without
    the GIL. Epoch e takes its rows in orders[e] (orders[0] every epoch if orders has one
    row) at learning rate learning_rates[e]. With parts.shape[0] > 1 row chunks, one OpenMP
    team of that many threads runs all the epochs (see _epoch).

    guard: before each epoch θ and the moments in use are copied to `saved`; an epoch whose
    loss or weights are not finite is undone and ends the call (event DIVERGED).
    plateau = [tol, patience, best loss, count, loss scale], updated in place: scikit-learn's
    rule — the epoch loss (data/n)/scale + penalty/n counts as no improvement when above
    best − tol; more than `patience` in a row ends the call (event PLATEAU). patience < 0:
    no rule. Returns (epochs completed, t, event); terms[e] = the epoch's two sums."""
    cdef long shared[4]
    cdef int threads = parts.shape[0]
    shared[0] = t
    shared[1] = 0
    shared[2] = COMPLETED
    shared[3] = 0
    if threads > 1:
        with nogil, parallel(num_threads=threads):
            _run_epochs(theta, offsets, sizes, hidden, output, loss, slope, tiny, X, Y, sw,
                        has_sw, orders, batch_size, sgd, nesterov, hyper, learning_rates,
                        beta_1, beta_2, first, second, grad, parts, part_losses,
                        min_chunk_rows, acts, deltas, xb, yb, wb, saved, guard, plateau,
                        terms, shared)
    else:
        with nogil:
            _run_epochs(theta, offsets, sizes, hidden, output, loss, slope, tiny, X, Y, sw,
                        has_sw, orders, batch_size, sgd, nesterov, hyper, learning_rates,
                        beta_1, beta_2, first, second, grad, parts, part_losses,
                        min_chunk_rows, acts, deltas, xb, yb, wb, saved, guard, plateau,
                        terms, shared)
    return shared[1], shared[0], shared[2]


# -- Python-callable contract kernels (arguments already checked by _contract.py) ------------
def forward_layer(const floating[:, ::1] A, const floating[:, ::1] W, const floating[::1] b,
                  int act, floating slope, floating[:, ::1] out):
    cdef int n = A.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    if n == 0:
        return
    with nogil:
        _forward(<floating*>&A[0, 0], <floating*>&W[0, 0], <floating*>&b[0], &out[0, 0], n,
                 n_in, n_out, act, slope)


def backward_layer(const floating[:, ::1] A, const floating[:, ::1] delta,
                   const floating[:, ::1] W, floating[:, ::1] grad_W, floating[::1] grad_b,
                   floating[:, ::1] delta_in, int act_in, floating slope, bint want):
    cdef int n = A.shape[0], n_in = W.shape[0], n_out = W.shape[1]
    cdef floating* d_in = &delta_in[0, 0] if want else NULL
    if n == 0:
        grad_W[:, :] = 0
        grad_b[:] = 0
        return
    with nogil:
        _backward(<floating*>&A[0, 0], <floating*>&delta[0, 0], <floating*>&W[0, 0],
                  &grad_W[0, 0], &grad_b[0], d_in, n, n_in, n_out, act_in, slope, want, False,
                  NULL)


def output_delta(const floating[:, ::1] A, const floating[:, ::1] Y, int act, int loss,
                 floating[:, ::1] delta, const floating[::1] sw, bint has_sw, floating slope,
                 floating tiny):
    cdef int n = A.shape[0], m = A.shape[1]
    cdef double total
    if n == 0:
        return 0.0
    with nogil:
        total = _output_delta(<floating*>&A[0, 0], <floating*>&Y[0, 0], &delta[0, 0],
                              <floating*>&sw[0], n, m, act, loss, has_sw, slope, tiny, NULL)
    return total
