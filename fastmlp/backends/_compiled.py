"""The Python side shared by the compiled backends (numba, cython).

Both compile the same four kernels with the same argument lists; this module checks the
arguments (via _contract) and builds the public contract functions around them, and keeps the
per-fit workspace, so the two backend modules hold only what differs: their kernels and how
they run threads.
"""
import numpy as np

from .. import activations, losses
from .._config import CHUNK_MIN_ROWS, data_parallel_chunks
from ..stopping import NO_RULE
from . import _contract

# Stand-ins for an absent delta_in and an unguarded run's snapshot (the kernels are typed for
# arrays; they never touch these).
NO_DELTA = {np.dtype(t): np.empty((1, 1), t) for t in (np.float32, np.float64)}
NO_SAVED = NO_DELTA
# Words between two threads' row blocks (see Workspace): 4-8 KiB, past the prefetchers' reach.
CHUNK_GAP = 1024


def contract_functions(forward, backward, output_delta_kernel):
    """The public forward_layer, backward_layer and output_delta around three raw kernels:
    forward(A, W, b, act, slope, out), backward(A, δ, W, gW, gb, δ_in, act_in, slope, want),
    output_delta(A, Y, act, loss, δ, sw, has_sw, slope, tiny)."""

    def forward_layer(A_in, W, b, activation, out, leaky_slope=0.01):
        """out = g(A_in @ W + b); returns out. Mirrors reference.forward_layer."""
        A_in, W, b = _contract.check_forward(A_in, W, b, activation, out)
        forward(A_in, W, b, activations.CODES[activation],
                activations.check_leaky_slope(leaky_slope), out)
        return out

    def backward_layer(A_in, delta, W, grad_W, grad_b, delta_in=None, activation_in=None,
                       leaky_slope=0.01):
        """grad_W = A_inᵀ δ, grad_b = Σ_rows δ, δ_in = (δ Wᵀ) ⊙ g'(A_in). Mirrors reference."""
        A_in, delta, W = _contract.check_backward(A_in, delta, W, grad_W, grad_b, delta_in,
                                                  activation_in)
        want = delta_in is not None
        backward(A_in, delta, W, grad_W, grad_b, delta_in if want else NO_DELTA[A_in.dtype],
                 activations.CODES[activation_in] if want else 0,
                 activations.check_leaky_slope(leaky_slope), want)

    def output_delta(A_out, Y, activation, loss, delta, sample_weight=None, leaky_slope=0.01):
        """δ_out into delta; returns the weighted summed loss. Mirrors reference.output_delta."""
        A_out, Y, sample_weight = _contract.check_output_delta(A_out, Y, activation, loss,
                                                               delta, sample_weight)
        has_sw = sample_weight is not None
        sw = sample_weight if has_sw else np.ones(1, A_out.dtype)
        return output_delta_kernel(A_out, Y, activations.CODES[activation], losses.CODES[loss],
                                   delta, sw, has_sw, activations.check_leaky_slope(leaky_slope),
                                   np.finfo(A_out.dtype).tiny)

    return forward_layer, backward_layer, output_delta


class Workspace:
    """Buffers for one (architecture, batch size, dtype, threads): allocated once per fit."""

    def __init__(self, arch, batch_size, dtype, n_chunks):
        self.key = (arch.layer_sizes, batch_size, dtype, n_chunks)
        def per_chunk(width):
            """Rows of `width` for a minibatch split in n_chunks row blocks: the compiled
            cython kernel gives each block its own region, CHUNK_GAP words apart, so a
            thread streaming through its rows never touches (nor prefetches) a line that
            another thread writes. Numba's kernel uses the first batch_size rows."""
            chunk_rows = -(-batch_size // n_chunks)
            gap = CHUNK_GAP if n_chunks > 1 else 0
            return np.empty(n_chunks * (chunk_rows * width + gap), dtype)

        self.acts = per_chunk(int(sum(arch.layer_sizes[1:])))
        self.deltas = np.empty_like(self.acts)
        self.xb = per_chunk(arch.layer_sizes[0])
        self.yb = per_chunk(arch.layer_sizes[-1])
        self.wb = np.empty(batch_size, dtype)
        self.grad = np.empty(arch.n_params, dtype)
        self.parts = np.empty((n_chunks, arch.n_params), dtype)
        self.part_losses = np.empty(n_chunks, np.float64)
        self.ones = np.empty(0, dtype)  # unit sample weights, grown to the data's row count
        self._saved = None

    def saved(self):
        """θ and both moments as they were before the current epoch (train_epochs' guard)."""
        if self._saved is None:
            self._saved = np.empty((3, self.grad.shape[0]), self.grad.dtype)
        return self._saved

    def unit_weights(self, n):
        if self.ones.shape[0] < n:
            self.ones = np.ones(n, self.ones.dtype)
        return self.ones


def train_epochs(epochs_kernel, threads, arch, theta, X, Y, sample_weight, orders, batch_size,
                 opt, state, learning_rates, guard, plateau, n_threads):
    """Checks, workspace and hyperparameters around a compiled multi-epoch kernel (both
    backends' kernels take the same arguments); `threads(n_chunks)` is the backend's context
    manager for running a minibatch split over n_chunks threads. Returns (terms, event) as
    reference.train_epochs does."""
    X, Y, sample_weight, orders, batch_size, learning_rates = _contract.check_train_epochs(
        arch, theta, X, Y, sample_weight, orders, batch_size, state, learning_rates)
    dtype = theta.dtype
    n_chunks = data_parallel_chunks(arch, batch_size, n_threads)
    ws = state.meta.get("workspace")
    if ws is None or ws.key != (arch.layer_sizes, batch_size, dtype, n_chunks):
        ws = state.meta["workspace"] = Workspace(arch, batch_size, dtype, n_chunks)
    has_sw = sample_weight is not None
    # In θ's dtype, so scalar arithmetic rounds as NumPy's does in the reference; slot 0 is
    # each epoch's learning rate, the last two are scratch (Adam's step size, the minibatch
    # weight sum).
    hyper = np.array([0.0, opt.momentum, opt.l2, opt.beta_1, 1 - opt.beta_1, opt.beta_2,
                      1 - opt.beta_2, opt.epsilon, 0.0, 0.0], dtype=dtype)
    rule = NO_RULE.copy() if plateau is None else plateau.to_array()
    terms = np.empty((learning_rates.shape[0], 2))
    hidden, output, loss = arch.codes
    with threads(n_chunks):
        epochs, state.t, event = epochs_kernel(
            theta, arch.offsets, arch.sizes, hidden, output, loss, arch.leaky_slope,
            np.finfo(dtype).tiny, X, Y,
            sample_weight if has_sw else ws.unit_weights(X.shape[0]), has_sw, orders,
            batch_size, opt.name == "sgd", opt.nesterov, hyper, learning_rates, opt.beta_1,
            opt.beta_2, state.t, state.first, state.second, ws.grad, ws.parts, ws.part_losses,
            CHUNK_MIN_ROWS, ws.acts, ws.deltas, ws.xb, ws.yb, ws.wb,
            ws.saved() if guard else NO_SAVED[dtype], guard, rule, terms)
    if plateau is not None:
        plateau.read_array(rule)
    return terms[:epochs], _contract.EVENTS[event]


def train_epoch_from(epochs_kernel, threads, arch, theta, X, Y, sample_weight, order,
                     batch_size, opt, state, n_threads):
    """The contract's one-epoch train_epoch through the multi-epoch kernel (no guard, no rule)."""
    terms, _ = train_epochs(epochs_kernel, threads, arch, theta, X, Y, sample_weight, order,
                            batch_size, opt, state, [opt.learning_rate], False, None, n_threads)
    return float(terms[0, 0]), float(terms[0, 1])
