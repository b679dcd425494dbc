"""The numba twin's kernels: the reference contract as @njit functions, the whole epoch in one call.

Twin of _cython_kernels.pyx: the functions both engines have carry the same name and say
which reference function they mirror; tests/test_twins.py fails when one engine has a kernel
or a constant the other lacks, unless it is on that test's engine-specific list with its
reason. The Python side (checks, workspace, threads) is numba_backend.py.

Two regimes, chosen by size (_layout.SMALL_WORK):

* small layers: register-friendly loops whose inner loop runs along a contiguous row, which
  LLVM vectorises; no BLAS call overhead.
* large layers: the GEMM comes from BLAS (np.dot inside @njit calls scipy's BLAS), row block
  by row block, and the epilogue (bias + activation, or δ ⊙ g') runs on each block while it
  is still in cache, not as extra sweeps over the whole matrix.

Precision (both twins): activations, derivatives and δ round to θ's dtype at every
operation, as NumPy's arithmetic on θ does in the reference; losses accumulate in float64.
One numba exception, kept so its trajectories stay bitwise what they were: a softmax row is
summed (and divided) in float64.

Compiled functions are cached on disk (cache=True): in __pycache__ beside this file when it
is writable, otherwise in Numba's per-user cache directory (NUMBA_CACHE_DIR overrides).
"""
import functools
import math
from collections import namedtuple

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._layout import (BLAS_ROWS, BLOCK_BYTES, BLOCK_DEPTHS, MIN_BLOCK_ROWS, SLICE_ALIGN, SMALL_WORK,
                      STEP_FIELDS, Activation, Event, Labels, Loss, Rule)

#: fastmath would let LLVM drop NaN/inf checks and reassociate sums; off unless proven harmless.
FASTMATH = False
# error_model="numpy": IEEE division (x/0 = inf, checked by the callers) instead of Python's
# ZeroDivisionError test, whose branch in every loop with a division blocks vectorisation.
jit = functools.partial(njit, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
parallel_jit = functools.partial(jit, parallel=True)

IDENTITY, LOGISTIC, TANH, RELU, LEAKY_RELU, SOFTMAX, EXP = (int(a) for a in Activation)
SQUARED_ERROR, CROSS_ENTROPY, BINARY_CROSS_ENTROPY, POISSON = (int(c) for c in Loss)
COMPLETED, PLATEAU, DIVERGED, INTERRUPTED = (int(e) for e in Event)
SGD, MOMENTUM, NESTEROV, ADAM, ADAMW = (int(u) for u in Rule)
OUTPUT_ONLY, ARGMAX, THRESHOLD = (int(k) for k in Labels)

#: One minibatch's update constants, each in θ's dtype: _layout.STEP's shared fields.
Step = namedtuple("Step", STEP_FIELDS)


def _cast(like, x):
    """x rounded to like's dtype, inside compiled code."""
    raise NotImplementedError("only callable from @njit code")


@overload(_cast, jit_options=dict(cache=True))
def _cast_overload(like, x):
    dtype = getattr(like, "dtype", like)  # an array's dtype, or a scalar's own type
    return lambda like, x: dtype(x)


def _float_limits(theta):
    """(tiny, eps) of θ's dtype, in that dtype: its smallest normal number (logs take
    max(y, tiny)) and its machine epsilon (log losses clip to [eps, 1 - eps])."""
    raise NotImplementedError("only callable from @njit code")


@overload(_float_limits, jit_options=dict(cache=True))
def _float_limits_overload(theta):
    info = np.finfo(np.dtype(str(theta.dtype)))
    tiny, eps = float(info.tiny), float(info.eps)
    return lambda theta: (_cast(theta, tiny), _cast(theta, eps))


# -- products through BLAS ----------------------------------------------------------------
@jit
def _weight_gradient(A_in, delta, grad_W):
    """grad_W = A_inᵀδ: one GEMM, or for more than BLAS_ROWS rows (past BLAS's 32-bit sizes,
    which numba's np.dot truncates) one per slice of BLAS_ROWS, summed in row order."""
    n = A_in.shape[0]
    np.dot(A_in[:BLAS_ROWS].T, delta[:BLAS_ROWS], grad_W)
    for r0 in range(BLAS_ROWS, n, BLAS_ROWS):
        grad_W += np.dot(A_in[r0:r0 + BLAS_ROWS].T, delta[r0:r0 + BLAS_ROWS])


@jit
def _squared_norm(x):
    """Σ x² through BLAS dot (a plain loop would be a latency-bound serial reduction), in
    slices of BLAS_ROWS elements past BLAS's 32-bit sizes."""
    total = 0.0
    for p in range(0, x.shape[0], BLAS_ROWS):
        total += np.dot(x[p:p + BLAS_ROWS], x[p:p + BLAS_ROWS])
    return total


# -- elementwise pieces -------------------------------------------------------------------
@jit
def _derivative(a, act, slope):
    """Mirrors activations.derivative for one output value."""
    one = _cast(a, 1.0)
    if act == LOGISTIC:
        return a * (one - a)
    if act == TANH:
        return one - a * a
    if act == RELU:
        return 1.0 if a > 0 else 0.0
    if act == LEAKY_RELU:
        return 1.0 if a > 0 else slope
    return 1.0


@jit
def _block_rows(n_cols, n_inner, itemsize):
    """Rows per GEMM block of an output n_cols wide over an inner dimension n_inner: about
    BLOCK_BYTES of output, at least MIN_BLOCK_ROWS and BLOCK_DEPTHS · n_inner."""
    return max(MIN_BLOCK_ROWS, BLOCK_DEPTHS * n_inner, BLOCK_BYTES // max(1, n_cols * itemsize))


@jit
def _activate_row(z, act, slope):
    """Mirrors activations.activate on one row, in place."""
    n = z.shape[0]
    if act == LOGISTIC:
        one = _cast(z, 1.0)  # in z's dtype: a 1.0 literal would carry the sum into float64
        for j in range(n):
            e = np.exp(-abs(z[j]))
            z[j] = (one if z[j] >= 0 else e) / (one + e)
    elif act == TANH:
        for j in range(n):
            z[j] = np.tanh(z[j])
    elif act == RELU:
        for j in range(n):
            z[j] = max(z[j], 0.0)
    elif act == LEAKY_RELU:
        for j in range(n):
            if z[j] < 0:
                z[j] *= slope
    elif act == SOFTMAX:
        m = z[0]
        for j in range(1, n):
            m = max(m, z[j])
        s = 0.0
        for j in range(n):
            z[j] = np.exp(z[j] - m)
            s += z[j]
        for j in range(n):
            z[j] /= s
    elif act == EXP:
        for j in range(n):
            z[j] = np.exp(z[j])


@jit
def _bias_activate(out, b, r0, r1, act, slope):
    """Epilogue of the forward pass on rows r0:r1: out += b, then out = g(out)."""
    for i in range(r0, r1):
        row = out[i]
        for j in range(row.shape[0]):
            row[j] += b[j]
        if act != IDENTITY:
            _activate_row(row, act, slope)


@jit
def _times_derivative(delta_in, A_in, r0, r1, act, slope):
    """Epilogue of the backward pass on rows r0:r1: δ_in *= g'(A_in).

    One loop per activation (the branch hoisted out) so that each loop vectorises."""
    n = delta_in.shape[1]
    one = _cast(delta_in, 1.0)
    for i in range(r0, r1):
        d, a = delta_in[i], A_in[i]
        if act == LOGISTIC:
            for k in range(n):
                d[k] *= a[k] * (one - a[k])
        elif act == TANH:
            for k in range(n):
                d[k] *= one - a[k] * a[k]
        elif act == RELU:
            for k in range(n):
                d[k] *= 1.0 if a[k] > 0 else 0.0
        elif act == LEAKY_RELU:
            for k in range(n):
                d[k] *= 1.0 if a[k] > 0 else slope


# -- layer kernels ------------------------------------------------------------------------
@jit
def _forward(A_in, W, b, out, act, slope):
    """Mirrors reference.forward_layer: out = g(A_in @ W + b)."""
    n, n_in = A_in.shape
    _forward_as(A_in, W, b, out, act, slope, n, _block_rows(W.shape[1], n_in, out.itemsize))


@jit
def _forward_as(A_in, W, b, out, act, slope, regime_rows, block):
    """_forward with its products run as plain loops or as BLAS GEMMs as they would for
    regime_rows rows, a GEMM per `block` rows."""
    n, n_in = A_in.shape
    n_out = W.shape[1]
    if regime_rows * n_in * n_out < SMALL_WORK:
        for i in range(n):
            row = out[i]
            row[:] = 0
            for k in range(n_in):
                a = A_in[i, k]
                w = W[k]
                for j in range(n_out):
                    row[j] += a * w[j]
        _bias_activate(out, b, 0, n, act, slope)
    else:
        for r0 in range(0, n, block):
            r1 = min(r0 + block, n)
            np.dot(A_in[r0:r1], W, out[r0:r1])
            _bias_activate(out, b, r0, r1, act, slope)


@jit
def _backward(A_in, delta, W, grad_W, grad_b, delta_in, act_in, slope, want_delta_in):
    """Mirrors reference.backward_layer: ∂L/∂W = A_inᵀδ, ∂L/∂b = Σ_rows δ, δ_in = (δWᵀ) ⊙ g'."""
    n, n_in = A_in.shape
    n_out = W.shape[1]
    grad_b[:] = 0
    for i in range(n):
        for j in range(n_out):
            grad_b[j] += delta[i, j]
    if n * n_in * n_out < SMALL_WORK:
        grad_W[:] = 0
        for i in range(n):
            d = delta[i]
            for k in range(n_in):
                a = A_in[i, k]
                g = grad_W[k]
                for j in range(n_out):
                    g[j] += a * d[j]
        if want_delta_in:
            for i in range(n):
                d = delta[i]
                for k in range(n_in):
                    w = W[k]
                    s = 0.0
                    for j in range(n_out):
                        s += d[j] * w[j]
                    delta_in[i, k] = s
            _times_derivative(delta_in, A_in, 0, n, act_in, slope)
    else:
        _weight_gradient(A_in, delta, grad_W)
        if want_delta_in:
            block = _block_rows(n_in, n_out, delta_in.itemsize)
            for r0 in range(0, n, block):
                r1 = min(r0 + block, n)
                np.dot(delta[r0:r1], W.T, delta_in[r0:r1])
                _times_derivative(delta_in, A_in, r0, r1, act_in, slope)


@jit
def _sparse_forward(values, indices, indptr, rows, W, b, out, act, slope):
    """Mirrors reference.forward_layer on rows `rows` of a CSR input (values, indices,
    indptr): out = g(X[rows] @ W + b), each row the sum of its non-zeros' rows of W, in
    the order they are stored (scipy's CSR × dense product)."""
    n_out = W.shape[1]
    for i in range(rows.shape[0]):
        row = out[i]
        row[:] = 0
        src = rows[i]
        for k in range(indptr[src], indptr[src + 1]):
            v = values[k]
            w = W[indices[k]]
            for j in range(n_out):
                row[j] += v * w[j]
    _bias_activate(out, b, 0, rows.shape[0], act, slope)


@jit
def _sparse_gradient(values, indices, indptr, rows, delta, grad_W, grad_b):
    """Mirrors reference.backward_layer for a CSR input's rows `rows` (the network's input,
    so no δ_in): grad_W = X[rows]ᵀ δ, each non-zero adding its δ row to its W row; grad_b
    = Σ_rows δ."""
    n_out = grad_W.shape[1]
    grad_W[:] = 0
    grad_b[:] = 0
    for i in range(rows.shape[0]):
        d = delta[i]
        for j in range(n_out):
            grad_b[j] += d[j]
        src = rows[i]
        for k in range(indptr[src], indptr[src + 1]):
            v = values[k]
            g = grad_W[indices[k]]
            for j in range(n_out):
                g[j] += v * d[j]


@jit
def _clipped(y, eps, one):
    """losses.clipped for one output."""
    return min(max(y, eps), one - eps)


@jit
def _output_delta(A_out, Y, delta, sw, act, loss, has_sw, slope, tiny):
    """Mirrors reference.output_delta: δ_out into delta, returns Σ_i w_i L_i (float64)."""
    n, m = A_out.shape
    one = _cast(delta, 1.0)
    eps = _float_limits(delta)[1]
    total = 0.0
    for i in range(n):
        y, r, d = A_out[i], Y[i], delta[i]
        # per-sample loss (losses.sample_losses)
        # A term whose target factor is 0 adds exactly 0 (its log is finite), so it is
        # skipped: with one-hot targets that saves all but one logarithm per row.
        li = 0.0
        for j in range(m):
            if loss == SQUARED_ERROR:
                li += 0.5 * (y[j] - r[j]) ** 2
            elif loss == CROSS_ENTROPY:
                if r[j] != 0:
                    li -= r[j] * np.log(_clipped(y[j], eps, one))
            elif loss == POISSON:
                li += y[j] - r[j]
                if r[j] != 0:
                    li += r[j] * (np.log(r[j]) - np.log(max(y[j], tiny)))
            else:
                c = _clipped(y[j], eps, one)
                if r[j] != 0:
                    li -= r[j] * np.log(c)
                if r[j] != 1:
                    li -= (1 - r[j]) * np.log(one - c)
        # δ_out (losses.delta)
        if act == SOFTMAX:
            if loss == CROSS_ENTROPY:
                rs = r[0]  # Σ r in the data's dtype, as the reference's Y.sum(axis=1)
                for j in range(1, m):
                    rs += r[j]
                for j in range(m):
                    d[j] = y[j] * rs - r[j]
            elif loss == SQUARED_ERROR:
                s = 0.0
                for j in range(m):
                    s += y[j] * (y[j] - r[j])
                for j in range(m):
                    d[j] = y[j] * ((y[j] - r[j]) - s)
            else:
                s = 0.0
                for j in range(m):
                    d[j] = -r[j] + (one - r[j]) * y[j] / max(one - y[j], tiny)
                    s += d[j]
                for j in range(m):
                    d[j] -= y[j] * s
        elif act == LOGISTIC:
            for j in range(m):
                if loss == BINARY_CROSS_ENTROPY:
                    d[j] = y[j] - r[j]
                elif loss == CROSS_ENTROPY:
                    d[j] = -r[j] * (one - y[j])
                else:
                    d[j] = (y[j] - r[j]) * y[j] * (one - y[j])
        elif act == EXP:  # poisson, canonical
            for j in range(m):
                d[j] = y[j] - r[j]
        else:
            for j in range(m):
                d[j] = (y[j] - r[j]) * _derivative(y[j], act, slope)
        if has_sw:
            for j in range(m):
                d[j] *= sw[i]
            li *= sw[i]
        total += li
    return total


# -- the compiled epoch -------------------------------------------------------------------
@jit
def _summed(g0, g1, p):
    """The raw gradient: g0[p], or g0[p] + g1[p] for two chunks' buffers (g1 None is typed
    away at compile time: one specialisation each)."""
    if g1 is None:
        return g0[p]
    return g0[p] + g1[p]


@jit
def _mean(x, wsum, inverse):
    """x / wsum. For a power-of-two wsum (a batch of 1, 32, 128 ...) x · (1 / wsum) is the
    same correctly rounded number, and a multiply costs a fraction of a divide, which bounds
    the update of small batches (LLVM unswitches the loop-invariant test)."""
    if inverse != 0:
        return x * inverse
    return x / wsum


@jit
def _exact_inverse(x):
    """1 / x if x is a power of two (so the reciprocal is exact), else 0."""
    return 1.0 / x if x > 0 and math.frexp(x)[0] == 0.5 else 0.0


@jit
def _update(theta, g0, g1, first, second, lo, hi, l2, step):
    """Mirrors reference.minibatch_step's tail and optim.step on θ[lo:hi], the raw gradient
    being g0 (+ g1): g = (∂L/∂θ + l2·θ) / Σw, then the step's update. Summing two chunks'
    buffers here saves a pass over them. One branch-free loop per rule, so LLVM vectorises
    each."""
    lr, momentum, wsum, inverse = step.lr, step.momentum, step.weight_sum, step.inverse
    th, m1, m2 = theta, first, second
    if step.rule == SGD:  # plain SGD: no velocity to read or write
        for p in range(lo, hi):
            th[p] -= lr * _mean(_summed(g0, g1, p) + l2 * th[p], wsum, inverse)
    elif step.rule == MOMENTUM:
        for p in range(lo, hi):
            g = _mean(_summed(g0, g1, p) + l2 * th[p], wsum, inverse)
            v = momentum * m1[p] - lr * g
            m1[p] = v
            th[p] += v
    elif step.rule == NESTEROV:
        for p in range(lo, hi):
            g = _mean(_summed(g0, g1, p) + l2 * th[p], wsum, inverse)
            v = momentum * m1[p] - lr * g
            m1[p] = v
            th[p] += momentum * v - lr * g
    elif step.rule == ADAM:
        b1, omb1, b2, omb2 = step.beta_1, step.one_minus_beta_1, step.beta_2, step.one_minus_beta_2
        eps, size = step.epsilon, step.adam_step
        for p in range(lo, hi):
            g = _mean(_summed(g0, g1, p) + l2 * th[p], wsum, inverse)
            m = b1 * m1[p] + omb1 * g
            s = b2 * m2[p] + omb2 * g * g
            m1[p] = m
            m2[p] = s
            th[p] -= size * m / (np.sqrt(s) + eps)
    else:  # ADAMW
        b1, omb1, b2, omb2 = step.beta_1, step.one_minus_beta_1, step.beta_2, step.one_minus_beta_2
        eps, size, decay, root = step.epsilon, step.adam_step, step.decay, step.bias_root
        for p in range(lo, hi):
            g = _mean(_summed(g0, g1, p) + l2 * th[p], wsum, inverse)
            m = b1 * m1[p] + omb1 * g
            s = b2 * m2[p] + omb2 * g * g
            m1[p] = m
            m2[p] = s
            th[p] = th[p] * decay - size * (m / (np.sqrt(s) / root + eps))


@jit
def _view(buf, start, rows, cols):
    return buf[start:start + rows * cols].reshape((rows, cols))


@jit
def _forward_backward(net, data, ws, rows, xv, yv, grad, nb, r0, r1):
    """Mirrors reference.minibatch_step's forward and backward passes, on rows r0:r1 of a
    gathered minibatch of nb rows: writes the gradient *summed over those rows* into grad
    and returns their summed loss. Row blocks are independent until the gradient, so threads
    can each take one. A sparse X is not gathered: the first layer reads its rows `rows`
    (the minibatch's rows of X) in place."""
    theta, offsets, sizes, slope = net.theta, net.offsets, net.sizes, net.leaky_slope
    hidden, output = net.hidden, net.output
    acts, deltas, wv, has_sw = ws.acts, ws.deltas, ws.wb, data.has_sample_weight
    tiny = _float_limits(theta)[0]
    n_layers = offsets.shape[0]
    n_last = sizes[n_layers]
    pos = 0
    a_in = xv[r0:r1]
    for l in range(n_layers):
        n_in, n_out = sizes[l], sizes[l + 1]
        W = _view(theta, offsets[l, 0], n_in, n_out)
        b = theta[offsets[l, 1]:offsets[l, 1] + n_out]
        out = _view(acts, pos, nb, n_out)[r0:r1]
        act = output if l == n_layers - 1 else hidden
        if l == 0 and data.sparse:
            _sparse_forward(data.X_values, data.X_indices, data.X_indptr, rows[r0:r1], W, b,
                            out, act, slope)
        else:
            _forward(a_in, W, b, out, act, slope)
        a_in = out
        pos += nb * n_out
    pos -= nb * n_last  # the output delta sits at the same offset as the output activations
    batch_loss = _output_delta(a_in, yv[r0:r1], _view(deltas, pos, nb, n_last)[r0:r1],
                               wv[r0:r1], output, net.loss, has_sw, slope, tiny)
    for l in range(n_layers - 1, -1, -1):
        n_in, n_out = sizes[l], sizes[l + 1]
        W = _view(theta, offsets[l, 0], n_in, n_out)
        gW = _view(grad, offsets[l, 0], n_in, n_out)
        gb = grad[offsets[l, 1]:offsets[l, 1] + n_out]
        delta = _view(deltas, pos, nb, n_out)[r0:r1]
        if l > 0:
            pos -= nb * n_in
            _backward(_view(acts, pos, nb, n_in)[r0:r1], delta, W, gW, gb,
                      _view(deltas, pos, nb, n_in)[r0:r1], hidden, slope, True)
        elif data.sparse:
            _sparse_gradient(data.X_values, data.X_indices, data.X_indptr, rows[r0:r1], delta,
                             gW, gb)
        else:
            _backward(xv[r0:r1], delta, W, gW, gb, delta, hidden, slope, False)
    return batch_loss


@jit
def _slice_start(c, n_chunks, n_params):
    """Where thread-slice c of θ starts (_layout.SLICE_ALIGN)."""
    if c == n_chunks:
        return n_params
    return (c * n_params // n_chunks) // SLICE_ALIGN * SLICE_ALIGN


@jit
def _update_slice(theta, g0, g1, first, second, lo, hi, offsets, sizes, step):
    """_update on θ[lo:hi], layer by layer: L2 on the weights, none on the biases; every
    operation in θ's dtype, as the cython twin's."""
    l2, no_l2 = step.l2, _cast(theta, 0.0)
    for l in range(offsets.shape[0]):
        w0, b0 = offsets[l, 0], offsets[l, 1]
        b1 = b0 + sizes[l + 1]
        if max(w0, lo) < min(b0, hi):
            _update(theta, g0, g1, first, second, max(w0, lo), min(b0, hi), l2, step)
        if max(b0, lo) < min(b1, hi):
            _update(theta, g0, g1, first, second, max(b0, lo), min(b1, hi), no_l2, step)


@jit
def _gather(data, order, start, r0, r1, xb, yb, wb):
    """Rows order[start + r0 : start + r1] of X, Y, sw into rows r0:r1 of the buffers."""
    X, Y, sw = data.X, data.Y, data.sample_weight
    for r in range(r0, r1):
        src = order[start + r]
        if not data.sparse:
            xb[r] = X[src]
        yb[r] = Y[src]
        wb[r] = sw[src]


@jit
def _penalty_norm(theta, offsets, l2):
    """Σ‖W_l‖² over the layers (0 without L2): the penalty's norm."""
    total = 0.0
    if l2 != 0:
        for l in range(offsets.shape[0]):
            total += _squared_norm(theta[offsets[l, 0]:offsets[l, 1]])
    return total


@jit
def _chunk_forward_backward(net, data, ws, order, start, xv, yv, nb, c):
    """Chunk c of a split step: rows [c·nb/C, (c+1)·nb/C) of the minibatch gathered, their
    gradient summed into the chunk's own buffer parts[c] and their loss into part_losses[c]."""
    n_chunks = ws.parts.shape[0]
    r0 = c * nb // n_chunks
    r1 = (c + 1) * nb // n_chunks
    _gather(data, order, start, r0, r1, xv, yv, ws.wb)
    ws.part_losses[c] = _forward_backward(net, data, ws, order[start:start + nb], xv, yv,
                                          ws.parts[c], nb, r0, r1)


@jit
def _chunk_update(net, opt, ws, step, c):
    """Slice c of a split update (_slice_start): the gradient buffers summed there in the
    fixed order 0, 1, …, C-1 (so a chunk count always gives bitwise the same result), then
    the slice of θ updated."""
    grad, parts = ws.grad, ws.parts
    n_chunks, n_params = parts.shape
    lo = _slice_start(c, n_chunks, n_params)
    hi = _slice_start(c + 1, n_chunks, n_params)
    if n_chunks == 2:  # summed inside the update, in the same order
        _update_slice(net.theta, parts[0], parts[1], opt.first, opt.second, lo, hi,
                      net.offsets, net.sizes, step)
        return
    grad[lo:hi] = parts[0, lo:hi]
    for k in range(1, n_chunks - 1):
        grad[lo:hi] += parts[k, lo:hi]
    _update_slice(net.theta, grad, parts[n_chunks - 1], opt.first, opt.second, lo, hi,
                  net.offsets, net.sizes, step)


@jit
def _summed_part_losses(ws):
    """The chunks' losses summed in chunk order."""
    batch_loss = ws.part_losses[0]
    for c in range(1, ws.parts.shape[0]):
        batch_loss += ws.part_losses[c]
    return batch_loss


# A split step's chunks on Numba's threads (a fork/join per phase), or all on this thread
# when the team is one (ctrl.threads: a busy machine), skipping the fork/join; the chunks
# are the same either way, so are the weights.
@parallel_jit
def _forward_backward_chunks(net, data, ws, order, start, xv, yv, nb):
    """Data-parallel step: chunk c on thread c; returns the summed loss."""
    for c in prange(ws.parts.shape[0]):
        _chunk_forward_backward(net, data, ws, order, start, xv, yv, nb, c)
    return _summed_part_losses(ws)


@jit
def _forward_backward_chunks_here(net, data, ws, order, start, xv, yv, nb):
    """The same step, every chunk on this thread (a team of one)."""
    for c in range(ws.parts.shape[0]):
        _chunk_forward_backward(net, data, ws, order, start, xv, yv, nb, c)
    return _summed_part_losses(ws)


@parallel_jit
def _update_chunks(net, opt, ws, step):
    """The update split as the step was: slice c on thread c."""
    for c in prange(ws.parts.shape[0]):
        _chunk_update(net, opt, ws, step, c)


@jit
def _update_chunks_here(net, opt, ws, step):
    """The same update, every slice on this thread (a team of one)."""
    for c in range(ws.parts.shape[0]):
        _chunk_update(net, opt, ws, step, c)


@intrinsic
def _stop_requested(typingctx, flag):
    """flag[0], loaded afresh at every call (an acquire load: a signal handler writes it, so
    it may not be kept in a register across the loop that polls it)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(data, "acquire", 8)

    return types.int64(flag), codegen


@intrinsic
def _monotonic(typingctx):
    """Seconds on CLOCK_MONOTONIC, for the time budget: clock_gettime called by its symbol
    name (a ctypes pointer would keep the function out of the disk cache)."""
    def codegen(context, builder, signature, args):
        i64, f64 = ir.IntType(64), ir.DoubleType()
        timespec = ir.LiteralStructType([i64, i64])
        clock_gettime = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), [ir.IntType(32),
                                                             timespec.as_pointer()]),
            "clock_gettime")
        now = cgutils.alloca_once(builder, timespec)
        builder.call(clock_gettime, [ir.Constant(ir.IntType(32), 1), now])  # CLOCK_MONOTONIC
        seconds = builder.sitofp(builder.load(cgutils.gep_inbounds(builder, now, 0, 0)), f64)
        nanoseconds = builder.sitofp(builder.load(cgutils.gep_inbounds(builder, now, 0, 1)), f64)
        return builder.fadd(seconds, builder.fmul(nanoseconds, ir.Constant(f64, 1e-9)))

    return types.float64(), codegen


@jit
def _weight_sum(wb, nb, has_sw):
    """Σw over a gathered minibatch's nb rows (nb when unweighted)."""
    total = 0.0
    for r in range(nb):
        total += wb[r] if has_sw else 1.0
    return total


@jit
def _epoch(net, data, opt, ws, ctrl, order, lr, t, terms):
    """Mirrors reference._epoch (minibatch_step inlined): one pass over the rows in `order`
    at learning rate lr (in θ's dtype); writes (Σ mean loss·rows, Σ mean L2 penalty·rows)
    into terms and returns (Adam's step count, interrupted): the pass ends early, after the
    minibatch during which the stop flag was raised. A minibatch whose sample weights are
    all zero makes no step and adds nothing to the terms.

    A minibatch of at least n_chunks · min_chunk_rows rows is split across threads (parts
    holds one gradient buffer per thread); smaller ones run on this thread. Every buffer is
    preallocated: a minibatch step allocates nothing."""
    theta, offsets, sizes = net.theta, net.offsets, net.sizes
    h = opt.hyper[0]
    n = data.Y.shape[0]
    n_layers = offsets.shape[0]
    n0, n_last = sizes[0], sizes[n_layers]
    batch_size, n_chunks = ctrl.batch_size, ws.parts.shape[0]
    l2 = _cast(theta, h.l2)
    beta_1, beta_2 = h.beta_1, h.beta_2
    data_term = 0.0
    penalty_term = 0.0
    for start in range(0, n, batch_size):
        nb = min(batch_size, n - start)
        xv = _view(ws.xb, 0, 0 if data.sparse else nb, n0)  # sparse: not gathered
        yv = _view(ws.yb, 0, nb, n_last)
        split = n_chunks > 1 and nb >= n_chunks * ctrl.min_chunk_rows
        if split and ctrl.threads > 1:
            batch_loss = _forward_backward_chunks(net, data, ws, order, start, xv, yv, nb)
        elif split:
            batch_loss = _forward_backward_chunks_here(net, data, ws, order, start, xv, yv, nb)
        else:
            _gather(data, order, start, 0, nb, xv, yv, ws.wb)
            batch_loss = _forward_backward(net, data, ws, order[start:start + nb], xv, yv,
                                           ws.grad, nb, 0, nb)
        weight_sum = _weight_sum(ws.wb, nb, data.has_sample_weight)
        if weight_sum == 0:  # every weight zero: no mean gradient (0/0), so no step
            if _stop_requested(ctrl.stop):
                return t, True
            continue
        adam_step, decay, root = _cast(theta, 0.0), _cast(theta, 1.0), _cast(theta, 1.0)
        if h.rule == ADAM:
            t += 1
            adam_step = _cast(theta, lr * np.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t))
        elif h.rule == ADAMW:
            t += 1
            adam_step = _cast(theta, lr / (1.0 - beta_1 ** t))
            decay = _cast(theta, 1.0 - lr * h.weight_decay)
            root = _cast(theta, np.sqrt(1.0 - beta_2 ** t))
        # the update's constants in θ's dtype (the L2 gradient: _update_slice)
        step = Step(h.rule, lr, _cast(theta, h.momentum), l2, _cast(theta, beta_1),
                    _cast(theta, 1 - beta_1), _cast(theta, beta_2), _cast(theta, 1 - beta_2),
                    _cast(theta, h.epsilon), adam_step, _cast(theta, weight_sum),
                    _cast(theta, _exact_inverse(weight_sum)), decay, root)
        squared_norm = _penalty_norm(theta, offsets, l2)  # before this step's update
        if split and ctrl.threads > 1:
            _update_chunks(net, opt, ws, step)
        elif split:
            _update_chunks_here(net, opt, ws, step)
        else:
            _update_slice(theta, ws.grad, None, opt.first, opt.second, 0, theta.shape[0], offsets,
                          sizes, step)
        data_term += batch_loss / weight_sum * nb
        penalty_term += 0.5 * l2 * squared_norm / weight_sum * nb
        if _stop_requested(ctrl.stop):
            return t, True
    terms[0] = data_term
    terms[1] = penalty_term
    return t, False


@jit
def _all_finite(x):
    """True if no element is NaN or ±inf (x - x is 0 exactly for the finite ones)."""
    bad = False
    for p in range(x.shape[0]):
        bad |= (x[p] - x[p]) != 0
    return not bad


@jit
def _plateau_update(plateau, loss):
    """Mirrors stopping.Plateau.update on the PLATEAU record: records one epoch's loss, True
    when it completes a plateau."""
    if loss > plateau.best - plateau.tol:
        plateau.count += 1
    else:
        plateau.count = 0
    if loss < plateau.best:
        plateau.best = loss
    return plateau.count > plateau.patience


@jit
def summed_gradient(network, data, workspace):
    """Mirrors reference.summed_gradient over rows data.orders[0] of X, Y and the sample
    weights, gathered into the workspace as a training step gathers its minibatch (_gather):
    the summed gradient into workspace.grad; returns the summed loss. The arguments are
    _layout's bundles."""
    rows = data.orders[0]
    nb = rows.shape[0]
    n_last = network.sizes[network.offsets.shape[0]]
    xv = _view(workspace.xb, 0, 0 if data.sparse else nb, network.sizes[0])
    yv = _view(workspace.yb, 0, nb, n_last)
    _gather(data, rows, 0, 0, nb, xv, yv, workspace.wb)
    return _forward_backward(network, data, workspace, rows, xv, yv, workspace.grad, nb, 0, nb)


@jit
def train_epochs(network, data, update, workspace, control):
    """Mirrors reference.train_epochs: up to len(learning_rates) epochs in one call; the
    bundles are _layout's (documented there). Writes the OUTCOME record. The stop flag and
    the time budget as in the cython twin's train_epochs."""
    theta, first, second, saved = network.theta, update.first, update.second, workspace.saved
    rule = update.hyper[0].rule
    plateau, outcome = control.plateau[0], control.outcome[0]
    n = data.Y.shape[0]
    orders, terms = data.orders, control.terms
    t = outcome.t
    keep_first, keep_second = rule != SGD, rule >= ADAM  # _layout.Rule: ADAM, ADAMW
    outcome.event = COMPLETED
    started = _monotonic()
    n_epochs = update.learning_rates.shape[0]
    for e in range(n_epochs):
        outcome.epochs = e
        if control.guard:
            saved[0] = theta
            if keep_first:
                saved[1] = first
            if keep_second:
                saved[2] = second
        order = orders[e if orders.shape[0] > 1 else 0]
        t_after, interrupted = _epoch(network, data, update, workspace, control, order,
                                      _cast(theta, update.learning_rates[e]), t, terms[e])
        if interrupted:  # the epoch is undone; t and epochs stay
            if control.guard:
                _restore(saved, theta, first, second, keep_first, keep_second)
            outcome.event = INTERRUPTED
            break
        epoch_loss = terms[e, 0] / n / plateau.scale + terms[e, 1] / n
        if control.guard and not (np.isfinite(epoch_loss) and _all_finite(theta)):
            _restore(saved, theta, first, second, keep_first, keep_second)
            outcome.event = DIVERGED
            break
        t = t_after
        outcome.epochs = e + 1
        if plateau.patience >= 0 and _plateau_update(plateau, epoch_loss):
            outcome.event = PLATEAU
            break
        if e + 1 < n_epochs and _monotonic() - started >= control.time_budget:
            break  # COMPLETED, with fewer epochs than asked for
    outcome.t = t


@jit
def predict(theta, offsets, sizes, hidden, output, slope, X, out, labels, label_kind,
            block_rows):
    """Mirrors reference.predict: the forward pass of every layer over X's rows, the output
    layer's activations into out, and by label_kind each row's class index into labels
    (ARGMAX: the first largest output; THRESHOLD: the single output above one half). Each
    layer's products run as they would for block_rows rows, a GEMM per block_rows rows
    (_forward_as), so a batch cut at multiples of block_rows gives the bits of the whole
    (_layout.prediction_rows). Returns -2 if X holds a NaN or an inf (nothing computed),
    else the first layer whose activations are not finite — a logistic or tanh layer's input
    tested, which its activation would hide — or -1. The hidden activations live in one
    buffer of two layers' rows, allocated here: concurrent calls share nothing."""
    n = X.shape[0]
    if not _all_finite(X.ravel()):
        return -2
    last = offsets.shape[0] - 1
    widest = 1
    for l in range(1, last + 1):
        widest = max(widest, sizes[l])
    buffer = np.empty(2 * n * widest, theta.dtype)
    overflow = -1
    for l in range(last + 1):
        n_in, n_out = sizes[l], sizes[l + 1]
        W = _view(theta, offsets[l, 0], n_in, n_out)
        b = theta[offsets[l, 1]:offsets[l, 1] + n_out]
        act = output if l == last else hidden
        saturates = act == LOGISTIC or act == TANH
        dst = out if l == last else _view(buffer, (l % 2) * n * widest, n, n_out)
        if l == 0:
            _forward_as(X, W, b, dst, IDENTITY if saturates else act, slope, block_rows,
                        block_rows)
        else:
            _forward_as(_view(buffer, ((l - 1) % 2) * n * widest, n, n_in), W, b, dst,
                        IDENTITY if saturates else act, slope, block_rows, block_rows)
        if overflow < 0 and not _all_finite(dst.ravel()):
            overflow = l
        if saturates:  # the bias is in: the activation apart, its input tested above
            for i in range(n):
                _activate_row(dst[i], act, slope)
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
    return overflow


@jit
def _restore(saved, theta, first, second, keep_first, keep_second):
    """The guard's snapshot put back (the cython twin's _keep with restore)."""
    theta[:] = saved[0]
    if keep_first:
        first[:] = saved[1]
    if keep_second:
        second[:] = saved[2]
