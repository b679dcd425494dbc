"""The Numba backend: the reference contract as @njit kernels, the whole epoch in one call.

Each kernel says which reference function it mirrors. Two regimes, chosen by size:

* small layers (fewer than SMALL_WORK multiply-adds): register-friendly loops whose inner
  loop runs along a contiguous row, which LLVM vectorises; no BLAS call overhead.
* large layers: the GEMM comes from BLAS (np.dot inside @njit calls scipy's BLAS), row block
  by row block, and the epilogue (bias + activation, or δ ⊙ g') runs on each block while it
  is still in cache, not as extra sweeps over the whole matrix.

No kernel reduces across threads: BLAS partitions its output, the loops are serial, so the
same inputs give bitwise-identical results whatever the thread count.

Compiled functions are cached on disk (cache=True): in __pycache__ beside this file when it
is writable, otherwise in Numba's per-user cache directory (NUMBA_CACHE_DIR overrides).
"""
import functools

import contextlib
import threading

import numba
import numpy as np
from numba import njit, prange

from .. import activations, losses
from .._config import FASTMATH, blas_thread_limit
from . import _compiled

name = "numba"

# error_model="numpy": IEEE division (x/0 = inf, checked by the callers) instead of Python's
# ZeroDivisionError test, whose branch in every loop with a division blocks vectorisation.
jit = functools.partial(njit, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")

# Activation and loss codes (fastmlp.activations.CODES / fastmlp.losses.CODES).
IDENTITY, LOGISTIC, TANH, RELU, LEAKY_RELU, SOFTMAX = range(6)
SQUARED_ERROR, CROSS_ENTROPY, BINARY_CROSS_ENTROPY = range(3)
assert activations.CODES["softmax"] == SOFTMAX and losses.CODES["binary_cross_entropy"] == 2

#: Below this many multiply-adds per GEMM, loops match or beat a BLAS call; above it BLAS
#: wins by 2-10x even at 32x64x128 (measured by bench/crossover.py on this 2-core AVX-512
#: machine: np.dot from @njit costs ~0.1 us, so the switch sits at tiny, batch-1 shapes).
SMALL_WORK = 1024
#: In the BLAS regime the GEMM output is produced in row blocks of about BLOCK_BYTES, so the
#: epilogue finds each block in L2; never fewer than MIN_BLOCK_ROWS rows, because smaller
#: GEMMs lose more to BLAS threading than the cache saves (200x64x100 float64: one call
#: 32 us, 128+72-row blocks 49 us, `python bench/data_parallel.py`).
BLOCK_BYTES = 1 << 20
MIN_BLOCK_ROWS = 256


# Numba's "workqueue" threading layer (the fallback when neither OpenMP nor TBB is present)
# aborts the process if two threads enter parallel code at once; there, parallel epochs
# take turns. The OpenMP and TBB layers are thread-safe and need no lock.
_WORKQUEUE_LOCK = threading.Lock()


def _parallel_guard(parallel):
    if not parallel:
        return contextlib.nullcontext()
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel code has run yet: the layer is not chosen
        layer = None
    return _WORKQUEUE_LOCK if layer in (None, "workqueue") else contextlib.nullcontext()


@njit(cache=True)
def _block_rows(n_cols, itemsize):
    return max(MIN_BLOCK_ROWS, BLOCK_BYTES // max(1, n_cols * itemsize))


# -- elementwise pieces -------------------------------------------------------------------
@jit
def _activate_row(z, act, slope):
    """Mirrors activations.activate on one row, in place."""
    n = z.shape[0]
    if act == LOGISTIC:
        for j in range(n):
            e = np.exp(-abs(z[j]))
            z[j] = (1.0 if z[j] >= 0 else e) / (1.0 + e)
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


@jit
def _derivative(a, act, slope):
    """Mirrors activations.derivative for one output value."""
    if act == LOGISTIC:
        return a * (1 - a)
    if act == TANH:
        return 1 - a * a
    if act == RELU:
        return 1.0 if a > 0 else 0.0
    if act == LEAKY_RELU:
        return 1.0 if a > 0 else slope
    return 1.0


@jit
def _bias_activate(out, b, act, slope, r0, r1):
    """Epilogue of the forward pass on rows r0:r1: out += b, then out = g(out)."""
    for i in range(r0, r1):
        row = out[i]
        for j in range(row.shape[0]):
            row[j] += b[j]
        if act != IDENTITY:
            _activate_row(row, act, slope)


@jit
def _times_derivative(delta_in, A_in, act, slope, r0, r1):
    """Epilogue of the backward pass on rows r0:r1: δ_in *= g'(A_in).

    One loop per activation (the branch hoisted out) so that each loop vectorises."""
    n = delta_in.shape[1]
    for i in range(r0, r1):
        d, a = delta_in[i], A_in[i]
        if act == LOGISTIC:
            for k in range(n):
                d[k] *= a[k] * (1 - a[k])
        elif act == TANH:
            for k in range(n):
                d[k] *= 1 - a[k] * a[k]
        elif act == RELU:
            for k in range(n):
                d[k] *= 1.0 if a[k] > 0 else 0.0
        elif act == LEAKY_RELU:
            for k in range(n):
                d[k] *= 1.0 if a[k] > 0 else slope


# -- layer kernels ------------------------------------------------------------------------
@jit
def _forward(A_in, W, b, act, slope, out):
    """Mirrors reference.forward_layer: out = g(A_in @ W + b)."""
    n, n_in = A_in.shape
    n_out = W.shape[1]
    if n * n_in * n_out < SMALL_WORK:
        for i in range(n):
            row = out[i]
            row[:] = 0
            for k in range(n_in):
                a = A_in[i, k]
                w = W[k]
                for j in range(n_out):
                    row[j] += a * w[j]
        _bias_activate(out, b, act, slope, 0, n)
    else:
        block = _block_rows(n_out, out.itemsize)
        for r0 in range(0, n, block):
            r1 = min(r0 + block, n)
            np.dot(A_in[r0:r1], W, out[r0:r1])
            _bias_activate(out, b, act, slope, r0, r1)


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
            _times_derivative(delta_in, A_in, act_in, slope, 0, n)
    else:
        np.dot(A_in.T, delta, grad_W)
        if want_delta_in:
            block = _block_rows(n_in, delta_in.itemsize)
            for r0 in range(0, n, block):
                r1 = min(r0 + block, n)
                np.dot(delta[r0:r1], W.T, delta_in[r0:r1])
                _times_derivative(delta_in, A_in, act_in, slope, r0, r1)


@jit
def _output_delta(A_out, Y, act, loss, delta, sw, has_sw, slope, tiny):
    """Mirrors reference.output_delta: δ_out into delta, returns Σ_i w_i L_i (float64)."""
    n, m = A_out.shape
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
                    li -= r[j] * np.log(max(y[j], tiny))
            else:
                if r[j] != 0:
                    li -= r[j] * np.log(max(y[j], tiny))
                if r[j] != 1:
                    li -= (1 - r[j]) * np.log(max(1 - y[j], tiny))
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
                    d[j] = -r[j] + (1 - r[j]) * y[j] / max(1 - y[j], tiny)
                    s += d[j]
                for j in range(m):
                    d[j] -= y[j] * s
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
                d[j] = (y[j] - r[j]) * _derivative(y[j], act, slope)
        if has_sw:
            for j in range(m):
                d[j] *= sw[i]
            li *= sw[i]
        total += li
    return total


# -- the compiled epoch -------------------------------------------------------------------
@jit
def _update(theta, grad, first, second, lo, hi, penalised, hyper, sgd, nesterov):
    """Mirrors reference.minibatch_step's tail and optim.step on θ[lo:hi]:
    g = (∂L/∂θ + l2·θ [weights only]) / Σw, then the SGD or Adam update.
    One branch-free loop per rule, so LLVM vectorises each."""
    lr, momentum, wsum = hyper[0], hyper[1], hyper[9]
    l2 = hyper[2] if penalised else hyper[2] * 0
    th, gr, m1, m2 = theta[lo:hi], grad[lo:hi], first[lo:hi], second[lo:hi]
    n = hi - lo
    if sgd and momentum == 0 and not nesterov:  # plain SGD: no velocity to read or write
        for p in range(n):
            th[p] -= lr * ((gr[p] + l2 * th[p]) / wsum)
    elif sgd and not nesterov:
        for p in range(n):
            g = (gr[p] + l2 * th[p]) / wsum
            v = momentum * m1[p] - lr * g
            m1[p] = v
            th[p] += v
    elif sgd:
        for p in range(n):
            g = (gr[p] + l2 * th[p]) / wsum
            v = momentum * m1[p] - lr * g
            m1[p] = v
            th[p] += momentum * v - lr * g
    else:
        b1, omb1, b2, omb2, eps, step = hyper[3], hyper[4], hyper[5], hyper[6], hyper[7], hyper[8]
        for p in range(n):
            g = (gr[p] + l2 * th[p]) / wsum
            m = b1 * m1[p] + omb1 * g
            s = b2 * m2[p] + omb2 * g * g
            m1[p] = m
            m2[p] = s
            th[p] -= step * m / (np.sqrt(s) + eps)


@jit
def _view(buf, start, rows, cols):
    return buf[start:start + rows * cols].reshape((rows, cols))


@jit
def _forward_backward(theta, offsets, sizes, hidden, output, loss, slope, tiny, xv, yv, wv,
                      has_sw, acts, deltas, grad, nb, r0, r1):
    """Forward, output delta and backward for rows r0:r1 of a gathered minibatch of nb rows.

    Writes the gradient *summed over those rows* into grad and returns their summed loss.
    Row blocks are independent until the gradient, so threads can each take one.
    """
    n_layers = offsets.shape[0]
    n_last = sizes[n_layers]
    pos = 0
    a_in = xv[r0:r1]
    for l in range(n_layers):
        n_in, n_out = sizes[l], sizes[l + 1]
        W = _view(theta, offsets[l, 0], n_in, n_out)
        b = theta[offsets[l, 1]:offsets[l, 1] + n_out]
        out = _view(acts, pos, nb, n_out)[r0:r1]
        _forward(a_in, W, b, output if l == n_layers - 1 else hidden, slope, out)
        a_in = out
        pos += nb * n_out
    pos -= nb * n_last  # the output delta sits at the same offset as the output activations
    batch_loss = _output_delta(a_in, yv[r0:r1], output, loss,
                               _view(deltas, pos, nb, n_last)[r0:r1], wv[r0:r1], has_sw,
                               slope, tiny)
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
        else:
            _backward(xv[r0:r1], delta, W, gW, gb, delta, hidden, slope, False)
    return batch_loss


@jit
def _gather(X, Y, sw, order, start, r0, r1, xb, yb, wb):
    """Rows order[start + r0 : start + r1] of X, Y, sw into rows r0:r1 of the buffers."""
    for r in range(r0, r1):
        src = order[start + r]
        xb[r] = X[src]
        yb[r] = Y[src]
        wb[r] = sw[src]


@jit
def _update_slice(theta, grad, first, second, lo, hi, offsets, sizes, hyper, sgd, nesterov):
    """_update on θ[lo:hi], layer by layer: L2 on the weights, none on the biases."""
    for l in range(offsets.shape[0]):
        w0, b0 = offsets[l, 0], offsets[l, 1]
        b1 = b0 + sizes[l + 1]
        if max(w0, lo) < min(b0, hi):
            _update(theta, grad, first, second, max(w0, lo), min(b0, hi), True, hyper, sgd,
                    nesterov)
        if max(b0, lo) < min(b1, hi):
            _update(theta, grad, first, second, max(b0, lo), min(b1, hi), False, hyper, sgd,
                    nesterov)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", parallel=True)
def _forward_backward_chunks(theta, offsets, sizes, hidden, output, loss, slope, tiny, X, Y,
                             sw, order, start, xv, yv, wv, has_sw, acts, deltas, parts,
                             part_losses, nb):
    """Data-parallel step: thread c gathers rows [c·nb/C, (c+1)·nb/C) of the minibatch and
    sums their gradient into its own buffer parts[c]; returns the summed loss."""
    n_chunks = parts.shape[0]
    for c in prange(n_chunks):
        r0 = c * nb // n_chunks
        r1 = (c + 1) * nb // n_chunks
        _gather(X, Y, sw, order, start, r0, r1, xv, yv, wv)
        part_losses[c] = _forward_backward(theta, offsets, sizes, hidden, output, loss, slope,
                                           tiny, xv, yv, wv, has_sw, acts, deltas, parts[c],
                                           nb, r0, r1)
    batch_loss = part_losses[0]
    for c in range(1, n_chunks):
        batch_loss += part_losses[c]
    return batch_loss


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", parallel=True)
def _update_chunks(theta, grad, parts, first, second, offsets, sizes, hyper, sgd, nesterov):
    """The update split as the step was: thread c takes a 64-byte aligned slice of θ, sums
    the gradient buffers there in the fixed order 0, 1, …, C-1 (so a thread count always
    gives bitwise the same result), then updates the slice."""
    n_chunks, n_params = parts.shape
    for c in prange(n_chunks):
        lo = (c * n_params // n_chunks) // 16 * 16
        hi = n_params if c == n_chunks - 1 else ((c + 1) * n_params // n_chunks) // 16 * 16
        grad[lo:hi] = parts[0, lo:hi]
        for k in range(1, n_chunks):
            grad[lo:hi] += parts[k, lo:hi]
        _update_slice(theta, grad, first, second, lo, hi, offsets, sizes, hyper, sgd, nesterov)


@jit
def _epoch(theta, offsets, sizes, hidden, output, loss, slope, tiny, X, Y, sw, has_sw, order,
           batch_size, sgd, nesterov, hyper, beta_1, beta_2, t, first, second, grad, parts,
           part_losses, min_chunk_rows, acts, deltas, xb, yb, wb):
    """Mirrors reference._epoch (minibatch_step inlined): returns (data, penalty, t).

    hyper (in θ's dtype, so scalar arithmetic rounds as NumPy's does): learning_rate,
    momentum, l2, β₁, 1-β₁, β₂, 1-β₂, ε, then two scratch slots (Adam step size, weight sum).
    A minibatch of at least parts.shape[0] · min_chunk_rows rows is split across threads
    (parts holds one gradient buffer per thread); smaller ones run on this thread.
    Every buffer is preallocated: a minibatch step allocates nothing.
    """
    n = X.shape[0]
    n_layers = offsets.shape[0]
    n0, n_last = sizes[0], sizes[n_layers]
    l2 = hyper[2]
    data_term = 0.0
    penalty_term = 0.0
    for start in range(0, n, batch_size):
        nb = min(batch_size, n - start)
        xv = _view(xb, 0, nb, n0)
        yv = _view(yb, 0, nb, n_last)
        split = parts.shape[0] > 1 and nb >= parts.shape[0] * min_chunk_rows
        if split:
            batch_loss = _forward_backward_chunks(
                theta, offsets, sizes, hidden, output, loss, slope, tiny, X, Y, sw, order,
                start, xv, yv, wb, has_sw, acts, deltas, parts, part_losses, nb)
        else:
            _gather(X, Y, sw, order, start, 0, nb, xv, yv, wb)
            batch_loss = _forward_backward(theta, offsets, sizes, hidden, output, loss, slope,
                                           tiny, xv, yv, wb, has_sw, acts, deltas, grad, nb,
                                           0, nb)
        weight_sum = 0.0
        for r in range(nb):
            weight_sum += wb[r] if has_sw else 1.0
        # mean gradient with L2 on the weights, then the optimizer update
        hyper[9] = weight_sum  # rounds to θ's dtype, as the reference's division does
        if not sgd:
            t += 1
            hyper[8] = hyper[0] * np.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
        squared_norm = 0.0  # of the weights before this step's update
        if l2 != 0:
            for l in range(n_layers):
                w0, b0 = offsets[l, 0], offsets[l, 1]
                # BLAS dot: a plain loop would be a latency-bound serial reduction
                squared_norm += np.dot(theta[w0:b0], theta[w0:b0])
        if split:
            _update_chunks(theta, grad, parts, first, second, offsets, sizes, hyper, sgd,
                           nesterov)
        else:
            _update_slice(theta, grad, first, second, 0, theta.shape[0], offsets, sizes,
                          hyper, sgd, nesterov)
        data_term += batch_loss / weight_sum * nb
        penalty_term += 0.5 * hyper[2] * squared_norm / weight_sum * nb
    return data_term, penalty_term, t


@jit
def _all_finite(x):
    """True if no element is NaN or ±inf (x - x is 0 exactly for the finite ones)."""
    bad = False
    for p in range(x.shape[0]):
        bad |= (x[p] - x[p]) != 0
    return not bad


COMPLETED, PLATEAU, DIVERGED = range(3)


@jit
def _plateau_update(plateau, loss):
    """Mirrors stopping.Plateau.update on its array form [tol, patience, best, count, scale]:
    records one epoch's loss, True when it completes a plateau."""
    if loss > plateau[2] - plateau[0]:
        plateau[3] += 1
    else:
        plateau[3] = 0
    if loss < plateau[2]:
        plateau[2] = loss
    return plateau[3] > plateau[1]


@jit
def _train_epochs(theta, offsets, sizes, hidden, output, loss, slope, tiny, X, Y, sw, has_sw,
                  orders, batch_size, sgd, nesterov, hyper, learning_rates, beta_1, beta_2, t,
                  first, second, grad, parts, part_losses, min_chunk_rows, acts, deltas, xb, yb,
                  wb, saved, guard, plateau, terms):
    """Mirrors reference.train_epochs: up to len(learning_rates) epochs in one call; the
    arguments as cython's train_epochs (csrc/_cython_kernels.pyx), which documents them.
    Returns (epochs completed, t, event)."""
    n = X.shape[0]
    keep_first = not (sgd and hyper[1] == 0 and not nesterov)
    keep_second = not sgd
    for e in range(learning_rates.shape[0]):
        t_before = t
        if guard:
            saved[0] = theta
            if keep_first:
                saved[1] = first
            if keep_second:
                saved[2] = second
        hyper[0] = learning_rates[e]
        order = orders[e if orders.shape[0] > 1 else 0]
        data_term, penalty_term, t = _epoch(
            theta, offsets, sizes, hidden, output, loss, slope, tiny, X, Y, sw, has_sw, order,
            batch_size, sgd, nesterov, hyper, beta_1, beta_2, t, first, second, grad, parts,
            part_losses, min_chunk_rows, acts, deltas, xb, yb, wb)
        terms[e, 0] = data_term
        terms[e, 1] = penalty_term
        epoch_loss = data_term / n / plateau[4] + penalty_term / n
        if guard and not (np.isfinite(epoch_loss) and _all_finite(theta)):
            theta[:] = saved[0]
            if keep_first:
                first[:] = saved[1]
            if keep_second:
                second[:] = saved[2]
            return e, t_before, DIVERGED
        if plateau[1] >= 0 and _plateau_update(plateau, epoch_loss):
            return e + 1, t, PLATEAU
    return learning_rates.shape[0], t, COMPLETED


# -- the public contract (validated in Python before any compiled code runs) --------------
forward_layer, backward_layer, output_delta = _compiled.contract_functions(
    _forward, _backward, _output_delta)


def _threads(n_chunks):
    """A split minibatch: each thread calls BLAS single-threaded (two levels of threading
    would oversubscribe the cores), and the workqueue layer needs its lock."""
    if n_chunks == 1:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(_parallel_guard(True))
    stack.enter_context(blas_thread_limit(1))
    return stack


def train_epochs(arch, theta, X, Y, sample_weight, orders, batch_size, opt, state,
                 learning_rates, guard=True, plateau=None):
    """Up to len(learning_rates) epochs in one compiled call. Mirrors reference.train_epochs;
    threads: Numba's current thread count (n_threads)."""
    return _compiled.train_epochs(_train_epochs, _threads, arch, theta, X, Y, sample_weight,
                                  orders, batch_size, opt, state, learning_rates, guard, plateau,
                                  max(1, numba.get_num_threads()))


def train_epoch(arch, theta, X, Y, sample_weight, order, batch_size, opt, state):
    """One epoch in one compiled call. Mirrors reference.train_epoch."""
    return _compiled.train_epoch_from(_train_epochs, _threads, arch, theta, X, Y, sample_weight,
                                      order, batch_size, opt, state,
                                      max(1, numba.get_num_threads()))


__all__ = ["name", "forward_layer", "backward_layer", "output_delta", "train_epoch",
           "train_epochs"]
