"""The NumPy reference backend: the specification every compiled backend is tested against.

Readable before fast. Each function follows the article's matrix form (rows = samples):

    forward     Z = A_in W + b,  A_out = g(Z)
    backward    ∂L/∂W = A_inᵀ δ,  ∂L/∂b = Σ_rows δ,  δ_in = (δ Wᵀ) ⊙ g'(A_in)
    output      δ_out = ∂L/∂z_out for the output activation / loss pair (see losses.py)

and writes into caller-provided buffers, which is the contract all backends share. The
network's input may be a scipy.sparse CSR matrix (checked by _checks.sparse_input): the
first layer's products are then scipy's, A_in W and A_inᵀ δ, and X is never densified.
"""
import dataclasses
import time

import numpy as np

from .. import activations, losses, optim
from ..stopping import Plateau
from . import _checks, _layout
from ._backend import Backend, Kernels

name = "numpy"


def _forward(A_in, W, b, activation, out, leaky_slope):
    """out = g(A_in @ W + b); returns out."""
    if _checks.is_sparse(A_in):
        out[...] = A_in @ W
    else:
        np.matmul(A_in, W, out=out)
    out += b
    return activations.activate(out, activation, leaky_slope)


def _backward(A_in, delta, W, grad_W, grad_b, delta_in, activation_in, leaky_slope):
    """grad_W = A_inᵀ δ, grad_b = Σ_rows δ and, if delta_in is given, δ_in = (δ Wᵀ) ⊙ g'(A_in)."""
    if _checks.is_sparse(A_in):
        grad_W[...] = A_in.T @ delta
    else:
        np.matmul(A_in.T, delta, out=grad_W)
    np.sum(delta, axis=0, out=grad_b)
    if delta_in is not None:
        np.matmul(delta, W.T, out=delta_in)
        delta_in *= activations.derivative(A_in, activation_in, leaky_slope)


def _output_delta(A_out, Y, activation, loss, delta, sample_weight, leaky_slope):
    """Write δ_out (rows scaled by sample_weight) into delta; return the (weighted) summed loss."""
    per_sample = losses.sample_losses(A_out, Y, loss)
    delta[...] = losses.delta(A_out, Y, activation, loss, leaky_slope)
    if sample_weight is None:
        return float(per_sample.sum())
    delta *= sample_weight[:, None]
    return float(per_sample @ sample_weight)


def predict(arch, theta, X, out, labels, label_kind, block_rows):
    """The forward pass of every layer over X's rows: the output layer's activations into
    out and, by label_kind (_layout.Labels), each row's class index into labels — ARGMAX the
    first largest output, THRESHOLD the single output above one half (scikit-learn's
    LabelBinarizer decisions). Returns -2 if X holds a NaN or an inf (nothing computed), else
    the first layer whose activations are not finite — a logistic or tanh layer's input
    tested, which its activation would hide — or -1. block_rows matters to the compiled
    twins only (NumPy's products are one BLAS call per layer, whose rounding of a row may
    depend on the rows around it)."""
    if not np.isfinite(_checks.data_of(X)).all():
        return -2
    coefs, intercepts = arch.views(theta)
    last = len(coefs) - 1
    overflow = -1
    A = X
    with np.errstate(over="ignore", invalid="ignore"):  # overflows are reported, not warned
        for l, (W, b) in enumerate(zip(coefs, intercepts)):
            dst = out if l == last else np.empty((X.shape[0], W.shape[1]), theta.dtype)
            act = arch.activation(l)
            saturates = act in ("logistic", "tanh")
            A = _forward(A, W, b, "identity" if saturates else act, dst, arch.leaky_slope)
            if overflow < 0 and not np.isfinite(dst).all():
                overflow = l
            if saturates:  # the bias is in: the activation apart, its input tested above
                A = activations.activate(dst, act, arch.leaky_slope)
    if label_kind == _layout.Labels.ARGMAX:
        labels[:] = np.argmax(out, axis=1)
    elif label_kind == _layout.Labels.THRESHOLD:
        labels[:] = out[:, 0] > 0.5
    return overflow


def summed_gradient(arch, theta, X, Y, sample_weight, grad):
    """The forward and backward passes over checked rows: the gradient summed over them
    (Σ_i w_i ∇L_i, no L2 term) into grad; returns their summed loss. θ is not changed."""
    coefs, intercepts = arch.views(theta)
    grad_coefs, grad_intercepts = arch.views(grad)
    acts = [X]
    for layer, (W, b) in enumerate(zip(coefs, intercepts)):
        out = np.empty((X.shape[0], W.shape[1]), dtype=theta.dtype)
        acts.append(_forward(acts[-1], W, b, arch.activation(layer), out, arch.leaky_slope))
    delta = np.empty_like(acts[-1])
    loss = _output_delta(acts[-1], Y, arch.output_activation, arch.loss, delta, sample_weight,
                         arch.leaky_slope)
    for layer in range(arch.n_layers - 1, -1, -1):
        delta_in = np.empty_like(acts[layer]) if layer > 0 else None
        _backward(acts[layer], delta, coefs[layer], grad_coefs[layer], grad_intercepts[layer],
                  delta_in, arch.hidden_activation if layer > 0 else None, arch.leaky_slope)
        delta = delta_in
    return loss


def minibatch_step(arch, theta, X, Y, sample_weight, opt, state, grad):
    """One optimizer step on one (checked) minibatch; returns (mean loss, mean L2 penalty).

    The step uses the *mean* gradient (Σ_i w_i ∇L_i + l2·W) / Σ_i w_i, as scikit-learn does.
    A minibatch whose weights are all zero has none (0/0): no step, and (0, 0) returned.
    """
    weight_sum = X.shape[0] if sample_weight is None else float(sample_weight.sum())
    if weight_sum == 0:
        return 0.0, 0.0
    loss = summed_gradient(arch, theta, X, Y, sample_weight, grad)
    return mean_step(arch, theta, grad, loss, weight_sum, opt, state)


def mean_step(arch, theta, grad, loss, weight_sum, opt, state):
    """The update from a minibatch's summed loss and gradient (grad, overwritten) and its
    weight sum (> 0): the mean gradient (Σ_i w_i ∇L_i + l2·W) / Σ_i w_i, the optimizer's step
    on θ and `state`; returns (mean loss, mean L2 penalty). What fastmlp.distributed applies
    to its shards' sums."""
    coefs, _ = arch.views(theta)
    grad_coefs, _ = arch.views(grad)
    squared_norm = sum(float(np.dot(W.ravel(), W.ravel())) for W in coefs)
    for W, gW in zip(coefs, grad_coefs):
        gW += opt.l2 * W
    grad /= weight_sum
    optim.step(theta, grad, opt, state)
    return loss / weight_sum, 0.5 * opt.l2 * squared_norm / weight_sum


def _rows_summed_gradient(arch, theta, X, Y, sample_weight, rows, grad, scratch=None):
    """Kernels.summed_gradient: summed_gradient over rows `rows` of X, Y, sample_weight."""
    weights = None if sample_weight is None else sample_weight[rows]
    return summed_gradient(arch, theta, X[rows], Y[rows], weights, grad)


def _train_epochs(arch, theta, X, Y, sample_weight, orders, batch_size, opt, state,
                  learning_rates, guard, plateau, stop=None, time_budget=np.inf):
    """Backend.train_epochs, on checked arguments: epoch by epoch in Python,
    each epoch's loss fed to the plateau rule and tested by the divergence guard."""
    grad = np.empty_like(theta)

    def epoch(order, epoch_opt, stop):
        return _epoch(arch, theta, X, Y, sample_weight, order, batch_size, epoch_opt, state,
                      grad, stop)

    return guarded_epochs(epoch, theta, state, orders, learning_rates, opt, X.shape[0], guard,
                          plateau, stop, time_budget)


def guarded_epochs(epoch, theta, state, orders, learning_rates, opt, n, guard, plateau,
                   stop=None, time_budget=np.inf):
    """The epochs loop of train_epochs around `epoch(order, opt, stop) -> (data term, penalty
    term)`, which updates θ and `state` in place and returns None when it saw the stop flag
    raised after a minibatch: the divergence guard, the plateau rule and the time budget
    applied after each epoch, an interrupted epoch undone (when guarded). The Dask
    stand-in (fastmlp.distributed) runs its epochs through it too."""
    rule = plateau if plateau is not None else Plateau(0.0, -1)
    terms, event = [], "completed"
    started = time.monotonic()
    for e, learning_rate in enumerate(learning_rates):
        saved = (theta.copy(), state.first.copy(), state.second.copy(), state.t) if guard else None
        t_before = state.t
        epoch_opt = dataclasses.replace(opt, learning_rate=float(learning_rate))
        # Inside the epoch nothing is re-checked or warned about: a diverging epoch shows in
        # its non-finite loss, which the guard (or the caller) reports.
        with np.errstate(over="ignore", invalid="ignore"):
            result = epoch(orders[e if orders.shape[0] > 1 else 0], epoch_opt, stop)
        if result is None:  # unguarded: θ and the moments as far as they got, t as the
            state.t = t_before  # compiled kernels keep it (the completed epochs' steps)
            if guard:
                theta[...], state.first[...], state.second[...], state.t = saved
            event = "interrupted"
            break
        data_term, penalty_term = result
        loss = rule.epoch_loss(data_term, penalty_term, n)
        if guard and not (np.isfinite(loss) and np.all(np.isfinite(theta))):
            theta[...], state.first[...], state.second[...], state.t = saved
            event = "diverged"
            break
        terms.append((data_term, penalty_term))
        if plateau is not None and plateau.update(loss):
            event = "plateau"
            break
        if time.monotonic() - started >= time_budget:
            break
    return np.array(terms, dtype=np.float64).reshape(-1, 2), event


def stop_requested(stop):
    """True when the stop flag (a one-element int64 array, or None: never) is raised."""
    return stop is not None and stop[0] != 0


def _epoch(arch, theta, X, Y, sample_weight, order, batch_size, opt, state, grad, stop=None):
    """One pass over the rows in `order`, in minibatches of batch_size (the last may be
    smaller): (Σ_b mean loss_b × rows_b, Σ_b mean L2 penalty_b × rows_b); None when the stop
    flag was raised (checked after each minibatch)."""
    data_term = penalty_term = 0.0
    for start in range(0, X.shape[0], batch_size):
        rows = order[start:start + batch_size]
        weights = None if sample_weight is None else sample_weight[rows]
        loss, penalty = minibatch_step(arch, theta, X[rows], Y[rows], weights, opt, state, grad)
        data_term += loss * len(rows)
        penalty_term += penalty * len(rows)
        if stop_requested(stop):
            return None
    return data_term, penalty_term


class _ReferenceJob:
    """Kernels.train_job of the reference: its arguments kept, each run one _train_epochs."""

    def __init__(self, *args):
        self.args = args

    def run(self, orders, learning_rates, plateau=None, stop=None, time_budget=np.inf):
        arch, theta, X, Y, sample_weight, batch_size, opt, state, guard = self.args
        return _train_epochs(arch, theta, X, Y, sample_weight, orders, batch_size, opt, state,
                             learning_rates, guard, plateau, stop, time_budget)


class _ReferenceKernels(Kernels):
    """The reference's kernels: the functions above."""
    forward_layer = staticmethod(_forward)
    backward_layer = staticmethod(_backward)
    output_delta = staticmethod(_output_delta)
    predict = staticmethod(predict)

    def train_job(self, arch, theta, X, Y, sample_weight, batch_size, opt, state, guard,
                  scratch):
        return _ReferenceJob(arch, theta, X, Y, sample_weight, batch_size, opt, state, guard)
    summed_gradient = staticmethod(_rows_summed_gradient)


backend = Backend(name, _ReferenceKernels())
# the reference's contract functions, checked, as the tests and benchmarks call them
forward_layer, backward_layer = backend.forward_layer, backend.backward_layer
output_delta, train_epochs = backend.output_delta, backend.train_epochs
