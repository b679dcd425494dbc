"""The Cython backend: a thin typed wrapper over the compiled extension fastmlp._cython_kernels.

The kernels (csrc/_cython_kernels.pyx) are compiled at install time: no JIT warm-up, the GIL
released for the whole epoch, OpenMP threads for the data-parallel minibatch, BLAS from
scipy.linalg.cython_blas. This module only checks arguments (backends/_contract.py) before
handing them to code compiled without bounds checks, and keeps the per-fit workspace.
"""
import contextlib

import numpy as np

from .. import _cython_kernels as _ck
from .. import activations, losses
from .._config import CHUNK_MIN_ROWS, blas_thread_limit, data_parallel_chunks
from . import _contract

name = "cython"

_NO_DELTA = {np.dtype(t): np.empty((1, 1), t) for t in (np.float32, np.float64)}


def forward_layer(A_in, W, b, activation, out, leaky_slope=0.01):
    """out = g(A_in @ W + b); returns out. Mirrors reference.forward_layer."""
    A_in, W, b = _contract.check_forward(A_in, W, b, activation, out)
    _ck.forward_layer(A_in, W, b, activations.CODES[activation],
                      activations.check_leaky_slope(leaky_slope), out)
    return out


def backward_layer(A_in, delta, W, grad_W, grad_b, delta_in=None, activation_in=None,
                   leaky_slope=0.01):
    """grad_W = A_inᵀ δ, grad_b = Σ_rows δ, δ_in = (δ Wᵀ) ⊙ g'(A_in). Mirrors reference."""
    A_in, delta, W = _contract.check_backward(A_in, delta, W, grad_W, grad_b, delta_in,
                                              activation_in)
    want = delta_in is not None
    _ck.backward_layer(A_in, delta, W, grad_W, grad_b,
                       delta_in if want else _NO_DELTA[A_in.dtype],
                       activations.CODES[activation_in] if want else 0,
                       activations.check_leaky_slope(leaky_slope), want)


def output_delta(A_out, Y, activation, loss, delta, sample_weight=None, leaky_slope=0.01):
    """δ_out into delta; returns the weighted summed loss. Mirrors reference.output_delta."""
    A_out, Y, sample_weight = _contract.check_output_delta(A_out, Y, activation, loss, delta,
                                                           sample_weight)
    has_sw = sample_weight is not None
    sw = sample_weight if has_sw else np.ones(1, A_out.dtype)
    return _ck.output_delta(A_out, Y, activations.CODES[activation], losses.CODES[loss], delta,
                            sw, has_sw, activations.check_leaky_slope(leaky_slope),
                            np.finfo(A_out.dtype).tiny)


class Workspace:
    """Buffers for one (architecture, batch size, dtype, threads): allocated once per fit."""

    def __init__(self, arch, batch_size, dtype, n_chunks):
        self.key = (arch.layer_sizes, batch_size, dtype, n_chunks)
        self.acts = np.empty(batch_size * int(sum(arch.layer_sizes[1:])), dtype)
        self.deltas = np.empty_like(self.acts)
        self.xb = np.empty(batch_size * arch.layer_sizes[0], dtype)
        self.yb = np.empty(batch_size * arch.layer_sizes[-1], dtype)
        self.wb = np.empty(batch_size, dtype)
        self.grad = np.empty(arch.n_params, dtype)
        self.parts = np.empty((n_chunks, arch.n_params), dtype)
        self.part_losses = np.empty(n_chunks, np.float64)


def _workspace(state, arch, batch_size, dtype, n_chunks):
    ws = state.meta.get("cython_workspace")
    if ws is None or ws.key != (arch.layer_sizes, batch_size, dtype, n_chunks):
        ws = state.meta["cython_workspace"] = Workspace(arch, batch_size, dtype, n_chunks)
    return ws


def _n_chunks():
    """OpenMP threads for the data-parallel step (n_threads via the thread limit)."""
    from .._config import current_thread_limit

    limit = current_thread_limit()
    return max(1, limit if limit is not None else _ck.max_threads())


def train_epoch(arch, theta, X, Y, sample_weight, order, batch_size, opt, state):
    """One epoch in one nogil compiled call. Mirrors reference.train_epoch."""
    X, Y, sample_weight, order, batch_size = _contract.check_train_epoch(
        arch, theta, X, Y, sample_weight, order, batch_size, state)
    dtype = theta.dtype
    n_chunks = data_parallel_chunks(arch, batch_size, _n_chunks())
    ws = _workspace(state, arch, batch_size, dtype, n_chunks)
    has_sw = sample_weight is not None
    hyper = np.array([opt.learning_rate, opt.momentum, opt.l2, opt.beta_1, 1 - opt.beta_1,
                      opt.beta_2, 1 - opt.beta_2, opt.epsilon, 0.0, 0.0], dtype=dtype)
    hidden, output, loss = arch.codes
    blas = blas_thread_limit(1) if n_chunks > 1 else contextlib.nullcontext()
    with blas:
        data_term, penalty_term, state.t = _ck.train_epoch(
            theta, arch.offsets, arch.sizes, hidden, output, loss, arch.leaky_slope,
            np.finfo(dtype).tiny, X, Y, sample_weight if has_sw else np.ones(X.shape[0], dtype),
            has_sw, order, batch_size, opt.name == "sgd", opt.nesterov, hyper, opt.beta_1,
            opt.beta_2, state.t, state.first, state.second, ws.grad, ws.parts, ws.part_losses,
            CHUNK_MIN_ROWS, ws.acts, ws.deltas, ws.xb, ws.yb, ws.wb)
    return data_term, penalty_term


__all__ = ["name", "forward_layer", "backward_layer", "output_delta", "train_epoch"]
