"""MLP: the low-level model. Parameters, a backend, and the forward/gradient/epoch calls.

Parameters live in one flat vector (see architecture.py); `coefs_[l]` (n_in, n_out) and
`intercepts_[l]` (n_out,) are views of it, in scikit-learn's layout.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state

from . import _memory, interrupts, optim
from ._threads import (blas_thread_limit, check_n_threads, resolve_n_threads, team_threads,
                      thread_limit)
from ._validation import check_dtype, check_matrix, check_sample_weight, check_targets
from .architecture import Architecture
from .backends import get_backend
from .backends._checks import (check_architecture, check_disjoint, check_schedule, data_of,
                                 is_sparse, output_array, row_orders)
from .backends._layout import BLAS_ONE_THREAD_WORK, Labels, prediction_rows

if TYPE_CHECKING:
    from .stopping import Plateau


def _buffer(scratch, key, rows, cols, dtype):
    """A (rows, cols) array: new, or the first rows of scratch[key] (grown when too small)."""
    if scratch is None:
        return np.empty((rows, cols), dtype)
    kept = scratch.get(key)
    if kept is None or kept.shape[0] < rows or kept.shape[1] != cols or kept.dtype != dtype:
        kept = scratch[key] = np.empty((max(rows, 1), cols), dtype)
    return kept[:rows]


_LABEL_KINDS = {k.name.lower(): int(k) for k in Labels}


@functools.lru_cache(maxsize=64)
def _optimizer(*settings):
    """optim.Optimizer(*settings), checked once per settings (it is immutable)."""
    return optim.Optimizer(*settings)


#: train_epoch(s)' keyword arguments of before optim.Optimizer was their one door.
_DEPRECATED_SETTINGS = ("momentum", "nesterov", "l2", "beta_1", "beta_2", "epsilon")


def _update_rule(optimizer, learning_rate, deprecated):
    """The optim.Optimizer of train_epoch(s)' `optimizer` (a name, or an Optimizer whose
    learning rate `learning_rate` replaces unless None), with the deprecated settings."""
    unknown = set(deprecated) - set(_DEPRECATED_SETTINGS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
    if deprecated:
        warnings.warn(f"{', '.join(sorted(deprecated))} as keyword arguments of "
                      "train_epoch/train_epochs are deprecated and will be removed in the next "
                      "release: pass optimizer=fastmlp.optim.Optimizer(name, ...) with them",
                      FutureWarning, stacklevel=3)
    if isinstance(optimizer, optim.Optimizer):
        if deprecated:
            raise TypeError("give the optimizer's settings in the Optimizer, not beside it")
        if learning_rate is None or learning_rate == optimizer.learning_rate:
            return optimizer
        return dataclasses.replace(optimizer, learning_rate=float(learning_rate))
    settings = dict(zip(_DEPRECATED_SETTINGS, (0.0, False, 0.0, 0.9, 0.999, 1e-8)))
    settings.update(deprecated)
    return _optimizer(optimizer, 0.01 if learning_rate is None else float(learning_rate),
                      float(settings["momentum"]), bool(settings["nesterov"]),
                      float(settings["l2"]), float(settings["beta_1"]),
                      float(settings["beta_2"]), float(settings["epsilon"]))


class TrainingJob:
    """One fit's training on one MLP, prepared once (MLP.training_job): the backend's job
    over checked rows, targets, sample weights, batch size and update rule. Each `run` is
    one train_epochs call, passing only what changes between calls."""

    def __init__(self, net, X, Y, sample_weight, batch_size, opt):
        self.n = n = X.shape[0]
        self.kernel_job = net.backend.unchecked.train_job(
            net.arch, net.theta, X, Y, sample_weight, min(int(batch_size), n), opt,
            net.optimizer_state_for(opt), True, net.scratch)

    def run_sums(self, orders, learning_rates, plateau=None, stop=None, time_budget=np.inf):
        """(per-epoch (Σ_b mean loss_b·rows_b, Σ_b mean penalty_b·rows_b), event)."""
        return self.kernel_job.run(row_orders(orders, self.n),
                                   np.ascontiguousarray(learning_rates, dtype=np.float64),
                                   plateau, stop, time_budget)

    def run(self, orders, learning_rates, plateau=None, stop=None, time_budget=np.inf):
        """Up to len(learning_rates) epochs (as MLP.train_epochs): (terms, event), terms each
        completed epoch's (mean data loss, mean L2 penalty)."""
        sums, event = self.kernel_job.run(row_orders(orders, self.n),
                                          np.ascontiguousarray(learning_rates, dtype=np.float64),
                                          plateau, stop, time_budget)
        return sums / self.n, event


class DivergenceError(ValueError, FloatingPointError):
    """Training produced NaN/inf; the model keeps the weights from before the failing epoch.

    A ValueError, so code that catches scikit-learn's errors catches it too.
    """


class MLP:
    """A multilayer perceptron trained through one of fastmlp's backends.

    Parameters
    ----------
    layer_sizes : sequence of int
        Units per layer, input first, output last: [64, 32, 10].
    hidden_activation, output_activation : str
        See fastmlp.activations.ACTIVATIONS (softmax only as output).
    loss : {"squared_error", "cross_entropy", "binary_cross_entropy"}
    leaky_slope : float in (0, 1)
        Slope of leaky_relu for negative inputs.
    dtype : float32 or float64
        Dtype of the weights, the buffers and the outputs; inputs are cast to it.
    backend : str or backend module
        "auto" (fastest available), "numpy", or a compiled backend.
    random_state : None, int or RandomState
        Seeds the Glorot-uniform initialisation (drawn exactly as scikit-learn draws it).
    n_threads : None or int
        Threads for BLAS and compiled kernels; None leaves the library defaults. Negative
        counts back from the CPUs (-1: all); capped at the CPUs this process may use.
    """

    def __init__(self, layer_sizes, hidden_activation="relu", output_activation="softmax",
                 loss="cross_entropy", leaky_slope=0.01, dtype=np.float64, backend="auto",
                 random_state=None, n_threads=None):
        self.arch = Architecture(layer_sizes, hidden_activation, output_activation, loss,
                                 leaky_slope)
        self.dtype = check_dtype(dtype)
        self.backend = get_backend(backend)
        self.n_threads = check_n_threads(n_threads)
        itemsize = np.dtype(self.dtype).itemsize
        _memory.check(_memory.network_bytes(self.arch.layer_sizes, itemsize),
                      f"a network of layers {list(self.arch.layer_sizes)}")
        self.theta = np.empty(self.arch.n_params, dtype=self.dtype)
        self.scratch = {}  # the backend's training workspace, kept between calls
        self.initialize(random_state)

    # -- parameters -------------------------------------------------------------------
    def initialize(self, random_state: int | np.random.RandomState | None = None) -> MLP:
        """Draw Glorot-uniform weights and biases, in scikit-learn's order of draws.

        The optimizer's moments are reset.

        Parameters
        ----------
        random_state : None, int or RandomState, default=None
            Seeds the draws.

        Returns
        -------
        self : MLP
            The network, initialised.
        """
        rng = check_random_state(random_state)
        factor = 2.0 if self.arch.hidden_activation == "logistic" else 6.0
        coefs, intercepts = self.arch.views(self.theta)
        for W, b in zip(coefs, intercepts):
            bound = np.sqrt(factor / (W.shape[0] + W.shape[1]))
            W[...] = rng.uniform(-bound, bound, W.shape)
            b[...] = rng.uniform(-bound, bound, b.shape)
        self.reset_optimizer()
        return self

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices, views of θ of shape (n_in, n_out); assigning copies in."""
        return self.arch.views(self.theta)[0]

    @coefs_.setter
    def coefs_(self, values):
        self.set_parameters(values, self.intercepts_)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors, views of θ of shape (n_out,); assigning copies in."""
        return self.arch.views(self.theta)[1]

    @intercepts_.setter
    def intercepts_(self, values):
        self.set_parameters(self.coefs_, values)

    def set_parameters(self, coefs: Sequence[ArrayLike], intercepts: Sequence[ArrayLike]) -> None:
        """Copy weights and biases into θ, all of them checked first.

        A wrong count, shape or dtype, or a NaN/inf, raises and changes nothing.

        Parameters
        ----------
        coefs : list of ndarray of shape (n_in, n_out)
            The weight matrices, layer by layer (scikit-learn's shapes).
        intercepts : list of ndarray of shape (n_out,)
            The bias vectors, layer by layer.
        """
        checked = []
        for name, values, targets in (("coefs_", coefs, self.coefs_),
                                      ("intercepts_", intercepts, self.intercepts_)):
            if not hasattr(values, "__len__") or len(values) != len(targets):
                raise ValueError(f"{name} needs a list of {len(targets)} arrays (one per "
                                 f"layer), got {values!r:.80}")
            for l, (value, target) in enumerate(zip(values, targets)):
                value = np.asarray(value)
                if value.dtype.kind not in "biuf":
                    raise ValueError(f"{name}[{l}] has dtype {value.dtype}; expected real "
                                     f"numbers ({self.dtype} here)")
                if value.shape != target.shape:
                    raise ValueError(f"{name}[{l}] has shape {value.shape}, this network "
                                     f"needs {target.shape}")
                if not np.all(np.isfinite(value)):
                    raise ValueError(f"{name}[{l}] contains NaN or inf")
                checked.append((value, target))
        for value, target in checked:
            if value is not target:
                target[...] = value  # (numpy copies overlapping memory correctly)

    def reset_optimizer(self) -> None:
        """Forget momentum/Adam moments (the next train_epoch starts a fresh optimizer)."""
        self.optimizer_state = None
        self._optimizer_name = None

    def snapshot(self) -> tuple:
        """Copy what training changes in place, for `restore`.

        Returns
        -------
        snapshot : tuple
            The weights θ, the optimizer's moments and step count, which optimizer they
            belong to and the thread count, copied (a failed refit puts the model back with it). The
            training workspace is not kept: it is rebuilt on demand.
        """
        moments = self.optimizer_state
        kept = moments and optim.OptimizerState(moments.first.copy(), moments.second.copy(),
                                                moments.t)
        return self.theta.copy(), kept, self._optimizer_name, self.n_threads

    def restore(self, snapshot: tuple) -> None:
        """Put back what `snapshot` copied.

        Parameters
        ----------
        snapshot : tuple
            What `snapshot()` returned.
        """
        theta, self.optimizer_state, self._optimizer_name, self.n_threads = snapshot
        self.theta[...] = theta

    def release_workspace(self) -> None:
        """Free the training buffers kept between calls (the gradient, the guard's snapshot
        of θ and the moments: up to four times θ's size); the next call allocates them anew."""
        self.scratch.clear()

    # -- computation ------------------------------------------------------------------
    def _check_X(self, X):
        self._check_parameters()
        return check_matrix(X, "X", self.dtype, self.arch.layer_sizes[0], accept_sparse=True)

    def _check_parameters(self):
        """What the unchecked kernels will trust: the architecture, θ and (if any) the
        optimizer's moments, each as constructed (an attribute replaced since is refused)."""
        check_architecture(self.arch)
        arrays = [("theta", self.theta)]
        if self.optimizer_state is not None:
            arrays += [("optimizer_state.first", self.optimizer_state.first),
                       ("optimizer_state.second", self.optimizer_state.second)]
        for name, array in arrays:
            output_array(array, name, (self.arch.n_params,))
            if array.dtype != self.dtype:
                raise ValueError(f"{name} has dtype {array.dtype}, this model {self.dtype}")
        objects = tuple(array for _, array in arrays)
        if vars(self).get("_disjoint_checked") != tuple(map(id, objects)):
            # the same array objects stay as disjoint as they were (their memory is theirs)
            check_disjoint(dict(arrays), {})
            self._disjoint_checked = tuple(map(id, objects))
            self._disjoint_arrays = objects  # kept alive: their ids stay theirs

    def _check_XY(self, X, Y, sample_weight):
        X = self._check_X(X)
        Y = check_targets(Y, X.shape[0], self.arch.layer_sizes[-1], self.dtype)
        return X, Y, check_sample_weight(sample_weight, X.shape[0], self.dtype)

    def _forward_all(self, X, scratch=None):
        """Activations of every layer, input first, for a checked X (the weights are kept
        finite: checked when set, guarded when trained); in `scratch`'s buffers if given."""
        kernels = self.backend.unchecked
        acts = [X]
        for layer, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            out = _buffer(scratch, ("act", layer), X.shape[0], W.shape[1], self.dtype)
            kernels.forward_layer(acts[-1], W, b, self.arch.activation(layer), out,
                                  self.arch.leaky_slope)
            acts.append(out)
        return acts

    def forward(self, X: ArrayLike) -> np.ndarray:
        """Compute the output activations.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_inputs)
            The input rows.

        Returns
        -------
        out : ndarray of shape (n_samples, n_outputs)
            The output layer's activations.

        Raises
        ------
        OverflowError
            Naming the layer, when finite inputs overflow to NaN/inf on the way.
        """
        return self.finite_output(self._check_X(X))

    def output(self, X: ArrayLike) -> np.ndarray:
        """Compute `forward` on an X checked already (the trainer's entry).

        X must be C-contiguous (or CSR), in this network's dtype and width, and finite; a
        non-finite output is the trainer's to judge (a diverging validation score).

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_inputs)
            The checked input rows.

        Returns
        -------
        out : ndarray of shape (n_samples, n_outputs)
            The output layer's activations.
        """
        return self.predictions(X)[0]

    def predictions(self, X: ArrayLike, labels: str = "output_only"
                    ) -> tuple[np.ndarray, np.ndarray | None, int]:
        """Compute the output layer's activations of an X whose width and finiteness are
        checked already, every layer in one compiled call per chunk of rows.

        A chunk is _layout.prediction_rows rows, about a megabyte of the widest layer's
        activations, each layer's product one GEMM over it: memory stays the output's and a
        chunk's whatever the batch (input converted to this network's dtype and C order a
        chunk at a time, where it is not), and Ctrl-C is seen between chunks. A row's bits
        depend on its chunk alone, so a batch cut at multiples of these rows predicts as the
        whole. A batch too small for BLAS to use threads runs without any thread setting; a
        larger one with n_threads, or without it as many BLAS threads as other processes
        leave free (as a fit's team); the last bits of a large network's products follow
        BLAS's thread count.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_inputs), or a checked CSR matrix
            Finite input rows, of any float dtype and memory layout.
        labels : {"output_only", "argmax", "threshold"}, default="output_only"
            What to derive from each row's output besides it: the index of its first
            largest value, or whether its single value is above one half.

        Returns
        -------
        out : ndarray of shape (n_samples, n_outputs)
            The output layer's activations, in this network's dtype.
        labels : ndarray of shape (n_samples,) or None
            Each row's class index (int64), None for "output_only".
        overflow : int
            The first layer whose activations overflowed to NaN/inf (a logistic or tanh
            layer's input included, which its activation would hide), -1 if none did, or
            -2 if X held a NaN or an inf after all (the output is then not computed).
        """
        kind = _LABEL_KINDS[labels]
        n = X.shape[0]
        out = np.empty((n, self.arch.layer_sizes[-1]), self.dtype)
        found = np.empty(n, np.int64) if kind else None
        kernels = self.backend.unchecked
        rows, one_thread_rows = self._prediction_sizes()
        if n <= min(rows, one_thread_rows) and (
                not isinstance(X, np.ndarray) or X.dtype == self.dtype and X.flags.c_contiguous):
            return out, found, kernels.predict(self.arch, self.theta, X, out, found, kind, rows)
        overflow = -1
        with self._prediction_threads():
            for r0 in range(0, n, rows):
                r1 = min(n, r0 + rows)
                chunk = X[r0:r1] if is_sparse(X) else np.ascontiguousarray(X[r0:r1],
                                                                           dtype=self.dtype)
                layer = kernels.predict(self.arch, self.theta, chunk, out[r0:r1],
                                        None if found is None else found[r0:r1], kind, rows)
                if layer == -2:
                    return out, found, layer  # a NaN or inf in X: nothing more to compute
                if overflow < 0:
                    overflow = layer
        return out, found, overflow

    def _prediction_sizes(self):
        """(rows per compiled prediction call: _layout.prediction_rows, the most rows whose
        every product BLAS keeps to one thread), computed once."""
        sizes = vars(self).get("_sizes_for_predictions")
        if sizes is None:
            layers = self.arch.layer_sizes
            widest_product = max(a * b for a, b in zip(layers[:-1], layers[1:]))
            sizes = self._sizes_for_predictions = (
                prediction_rows(layers, self.dtype.itemsize),
                BLAS_ONE_THREAD_WORK // widest_product)
        return sizes

    def _prediction_threads(self):
        """The threads of a prediction too large for one: n_threads if set, else as many as
        other processes leave free (the BLAS default otherwise)."""
        if self.n_threads is not None:
            return thread_limit(self.n_threads)
        requested = resolve_n_threads(-1)
        team = team_threads(requested)
        return blas_thread_limit(team) if team < requested else contextlib.nullcontext()

    def finite_output(self, X: ArrayLike) -> np.ndarray:
        """Compute `output`, or raise OverflowError naming the first non-finite layer.

        The weights are finite, so a non-finite layer means inputs too large for the dtype;
        a logistic or tanh layer's input is tested before its activation, which would hide
        an overflow.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_inputs)
            The checked input rows (of any float dtype and layout).

        Returns
        -------
        out : ndarray of shape (n_samples, n_outputs)
            The output layer's activations, all finite.

        Raises
        ------
        OverflowError
            Naming the first layer whose activations are not finite.
        """
        out, _, overflow = self.predictions(X)
        if overflow == -2:
            raise ValueError("X contains NaN or inf")
        if overflow >= 0:
            raise self.overflow_error(X, overflow)
        return out

    def overflow_error(self, X: ArrayLike, layer: int) -> OverflowError:
        """The error for inputs X whose activations overflowed at `layer`.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_inputs)
            The input rows.
        layer : int
            The first layer whose activations were not finite.

        Returns
        -------
        error : OverflowError
            Naming the layer, its activation and the largest input.
        """
        return OverflowError(
            f"layer {layer} ({self.arch.activation(layer)}) overflowed: finite inputs gave "
            f"NaN/inf activations in {self.dtype.name} (the largest |input| is "
            f"{float(np.abs(data_of(X)).max(initial=0)):.3g}); scale the inputs")

    def loss(self, X: ArrayLike, Y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """Compute the summed (sample-weighted) loss over the batch.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_inputs)
            The input rows.
        Y : array-like of shape (n_samples, n_outputs)
            The targets, in the output layer's encoding.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows.

        Returns
        -------
        loss : float
            The summed loss.
        """
        return self.gradients(X, Y, sample_weight)[0]

    def gradients(self, X: ArrayLike, Y: ArrayLike, sample_weight: ArrayLike | None = None,
                  reduction: str = "sum") -> tuple[float, list[np.ndarray], list[np.ndarray]]:
        """Compute the loss and its gradient with respect to every weight and bias.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_inputs)
            The input rows.
        Y : array-like of shape (n_samples, n_outputs)
            The targets, in the output layer's encoding.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows.
        reduction : {"sum", "mean"}, default="sum"
            "mean" divides the loss and the gradients by the summed weights.

        Returns
        -------
        loss : float
            The summed (or mean) loss.
        grad_coefs : list of ndarray of shape (n_in, n_out)
            ∂L/∂W per layer.
        grad_intercepts : list of ndarray of shape (n_out,)
            ∂L/∂b per layer.

        Notes
        -----

        The sums are the article's matrix form: ∂L/∂W_l = A_{l-1}ᵀ δ_l, ∂L/∂b_l = Σ_i δ_{l,i}.
        """
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        X, Y, sample_weight = self._check_XY(X, Y, sample_weight)
        grad = np.empty_like(self.theta)
        with thread_limit(self.n_threads):
            loss = self.loss_and_gradient(X, Y, sample_weight, grad)
        if reduction == "mean":
            total = X.shape[0] if sample_weight is None else float(sample_weight.sum())
            loss /= total
            grad /= total
        grad_coefs, grad_intercepts = self.arch.views(grad)
        return loss, grad_coefs, grad_intercepts

    def loss_and_gradient(self, X: ArrayLike, Y: np.ndarray, sample_weight: np.ndarray | None,
                          grad: np.ndarray, scratch: dict | None = None) -> float:
        """Compute the summed loss of checked inputs, the summed gradient into `grad`.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_inputs)
            The checked input rows.
        Y : ndarray of shape (n_samples, n_outputs)
            The checked targets.
        sample_weight : ndarray of shape (n_samples,) or None
            Weights of the rows.
        grad : ndarray of shape (n_params,)
            Receives the gradient, laid out as θ.
        scratch : dict, default=None
            Where this method keeps its activation and δ buffers, reused by the next call
            (a repeated call then allocates nothing).

        Returns
        -------
        loss : float
            The summed loss.
        """
        arch, kernels = self.arch, self.backend.unchecked
        acts = self._forward_all(X, scratch)
        delta = _buffer(scratch, ("delta", arch.n_layers), *acts[-1].shape, self.dtype)
        loss = kernels.output_delta(acts[-1], Y, arch.output_activation, arch.loss, delta,
                                    sample_weight, arch.leaky_slope)
        coefs = self.coefs_
        grad_coefs, grad_intercepts = arch.views(grad)
        for layer in range(arch.n_layers - 1, -1, -1):
            delta_in = (_buffer(scratch, ("delta", layer), *acts[layer].shape, self.dtype)
                        if layer > 0 else None)
            kernels.backward_layer(acts[layer], delta, coefs[layer], grad_coefs[layer],
                                   grad_intercepts[layer], delta_in,
                                   arch.hidden_activation if layer > 0 else None,
                                   arch.leaky_slope)
            delta = delta_in
        return loss

    def train_epoch(self, X: ArrayLike, Y: ArrayLike, batch_size: int = 32,
                    learning_rate: float | None = None,
                    optimizer: str | optim.Optimizer = "sgd", *, shuffle: bool = False,
                    random_state: int | np.random.RandomState | None = None,
                    sample_weight: ArrayLike | None = None, order: ArrayLike | None = None,
                    **deprecated) -> float:
        """Train one pass over (X, Y) in minibatches.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_inputs)
            The input rows.
        Y : array-like of shape (n_samples, n_outputs)
            The targets, in the output layer's encoding.
        batch_size : int, default=32
            Rows per minibatch.
        learning_rate : float, default=None
            The step size; None: the optimizer's (0.01 for an optimizer given by name).
        optimizer : {"sgd", "adam"} or fastmlp.optim.Optimizer, default="sgd"
            The update rule: a name (its default settings) or an Optimizer with its
            settings (momentum, Nesterov, L2, Adam's betas and epsilon).
        shuffle : bool, default=False
            Permute the rows (seeded by `random_state`) when `order` is None.
        random_state : None, int or RandomState, default=None
            Seeds the permutation.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows.
        order : array-like of shape (n_samples,), default=None
            The row order.
        **deprecated
            momentum, nesterov, l2, beta_1, beta_2, epsilon: deprecated (FutureWarning),
            removed in the next release; give them to the Optimizer.

        Returns
        -------
        loss : float
            The epoch's mean loss, L2 included.

        Raises
        ------
        DivergenceError
            If the loss or the weights turn NaN/inf; the weights and optimizer state from
            before the epoch are put back.

        Notes
        -----
        Each step uses the minibatch *mean* gradient, as scikit-learn does. The optimizer's
        moments persist between calls (reset_optimizer() forgets them; changing the optimizer
        name resets them). `order` gives the row order explicitly; otherwise rows are taken in
        order, or permuted when shuffle=True (seeded by random_state). The two parts of the
        returned loss, (data term, L2 term), are kept in `last_epoch_terms`. If the loss or the
        weights turn NaN/inf, the weights and optimizer state from before the epoch are put
        back and DivergenceError (a ValueError) is raised.
        """
        opt = _update_rule(optimizer, learning_rate, deprecated)
        if order is None and shuffle:
            order = check_random_state(random_state).permutation(np.shape(X)[0])
        losses, event = self.train_epochs(X, Y, [opt.learning_rate], batch_size, opt,
                                          sample_weight=sample_weight, orders=order)
        if event == "diverged":
            raise DivergenceError(
                "training diverged: the loss or the weights became NaN or inf during this "
                "epoch; the weights from before it were restored. Lower the learning rate or "
                "scale the inputs.")
        self.last_epoch_terms = self.last_epochs_terms[0]
        return float(losses[0])

    def train_epochs(self, X: ArrayLike, Y: ArrayLike, learning_rates: ArrayLike,
                     batch_size: int = 32, optimizer: str | optim.Optimizer = "sgd", *,
                     sample_weight: ArrayLike | None = None, orders: ArrayLike | None = None,
                     plateau: Plateau | None = None, **deprecated) -> tuple[np.ndarray, str]:
        """Train several epochs in one backend call (compiled backends: one compiled call).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_inputs)
            The input rows.
        Y : array-like of shape (n_samples, n_outputs)
            The targets, in the output layer's encoding.
        learning_rates : array-like of shape (n_epochs,)
            Each epoch's step size.
        batch_size : int, default=32
            Rows per minibatch.
        optimizer : {"sgd", "adam"} or fastmlp.optim.Optimizer, default="sgd"
            The update rule: a name (its default settings) or an Optimizer with its
            settings (its learning_rate is replaced by each epoch's).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows.
        orders : array-like of shape (n_epochs, n_samples) or (n_samples,), default=None
            Each epoch's row order (one order: the same every epoch; None: rows in order).
        plateau : fastmlp.stopping.Plateau, default=None
            Fed each epoch's loss; the call stops after the epoch that completes a plateau.
        **deprecated
            momentum, nesterov, l2, beta_1, beta_2, epsilon: deprecated (FutureWarning),
            removed in the next release; give them to the Optimizer.

        Returns
        -------
        losses : ndarray of shape (n_completed,)
            The mean loss of each completed epoch.
        event : {"completed", "plateau", "diverged"}
            How the call ended.

        Notes
        -----
        Epoch e runs at learning_rates[e] with its rows in orders[e] (a single order: the same
        every epoch; None: rows in order). Otherwise as train_epoch.

        Returns (losses, event): the mean loss of each completed epoch and "completed",
        "plateau", or "diverged" — the epoch after the last completed one made the loss or
        weights NaN/inf and was undone: weights and optimizer state are as they were after
        the last completed epoch. The per-epoch (data term, L2 term) pairs are kept in
        `last_epochs_terms`.

        Ctrl-C ends the call after the minibatch under way: that epoch is undone (as a
        diverged one), `last_epochs_terms` holds the epochs that completed, and
        KeyboardInterrupt is raised.
        """
        X, Y, sample_weight = self._check_XY(X, Y, sample_weight)
        check_disjoint({"theta": self.theta},
                       {"X": data_of(X), "Y": Y, "sample_weight": sample_weight})
        orders, learning_rates, batch_size = check_schedule(orders, learning_rates, batch_size,
                                                            X.shape[0])
        opt = _update_rule(optimizer, float(learning_rates[0]), deprecated)
        n = X.shape[0]
        with thread_limit(self.n_threads), interrupts.deferred() as stop:
            sums, event = self._epoch_sums(X, Y, sample_weight, orders, learning_rates,
                                           batch_size, opt, plateau, stop.flag)
            sums = sums.tolist()
            self.last_epochs_terms = [(d / n, p / n) for d, p in sums]
            stop.check()
        return np.array([(d + p) / n for d, p in sums]), event

    def training_job(self, X: ArrayLike, Y: np.ndarray, sample_weight: np.ndarray | None,
                     batch_size: int, opt: optim.Optimizer) -> TrainingJob:
        """Prepare `train_epochs` on arguments checked already, once for a fit (the trainer's
        entry): the backend's bundles of this network, the data and the optimizer's moments
        are built here, and each of the job's calls passes only what changes.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_inputs)
            The checked input rows.
        Y : ndarray of shape (n_samples, n_outputs)
            The checked targets.
        sample_weight : ndarray of shape (n_samples,) or None
            Weights of the rows.
        batch_size : int
            Rows per minibatch.
        opt : fastmlp.optim.Optimizer
            The update rule and its hyperparameters.

        Returns
        -------
        job : TrainingJob
            Its `run(orders, learning_rates, plateau=None, stop=None, time_budget=inf)`
            trains and returns (terms, event) as `train_epochs` describes them.
        """
        return TrainingJob(self, X, Y, sample_weight, batch_size, opt)

    def run_epochs(self, X: ArrayLike, Y: np.ndarray, sample_weight: np.ndarray | None,
                   orders: np.ndarray | None, learning_rates: np.ndarray, batch_size: int,
                   opt: optim.Optimizer, plateau: Plateau | None = None,
                   stop: np.ndarray | None = None,
                   time_budget: float = np.inf) -> tuple[np.ndarray, str]:
        """Run one call of a `training_job` on these arguments (checked already).

        Deprecated (FutureWarning), removed in the next release: use `training_job`, once
        per fit, and its `run` per call.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_inputs)
            The checked input rows.
        Y : ndarray of shape (n_samples, n_outputs)
            The checked targets.
        sample_weight : ndarray of shape (n_samples,) or None
            Weights of the rows.
        orders : ndarray of shape (n_epochs, n_samples) or None
            Each epoch's row order (None: rows in order).
        learning_rates : ndarray of shape (n_epochs,)
            Each epoch's step size.
        batch_size : int
            Rows per minibatch.
        opt : fastmlp.optim.Optimizer
            The update rule and its hyperparameters.
        plateau : fastmlp.stopping.Plateau, default=None
            The stopping rule fed each epoch's loss.
        stop : ndarray, default=None
            The stop flag (fastmlp.interrupts) the kernels read.
        time_budget : float, default=inf
            Seconds after which the call returns between epochs.

        Returns
        -------
        terms : ndarray of shape (n_completed, 2)
            Each completed epoch's (mean data loss, mean L2 penalty).
        event : str
            How the call ended (see `train_epochs`).
        """
        warnings.warn("MLP.run_epochs is deprecated and will be removed in the next release: "
                      "prepare the fit once with MLP.training_job(X, Y, sample_weight, "
                      "batch_size, opt) and call its run(orders, learning_rates, ...)",
                      FutureWarning, stacklevel=2)
        return self.training_job(X, Y, sample_weight, batch_size, opt).run(
            orders, learning_rates, plateau, stop, time_budget)

    def _epoch_sums(self, X, Y, sample_weight, orders, learning_rates, batch_size, opt,
                    plateau, stop=None, time_budget=np.inf):
        """The backend's per-epoch (Σ_b mean loss_b·rows_b, Σ_b mean penalty_b·rows_b)."""
        job = self.training_job(X, Y, sample_weight, batch_size, opt)
        return job.run_sums(orders, learning_rates, plateau, stop, time_budget)

    def optimizer_state_for(self, opt: optim.Optimizer) -> optim.OptimizerState:
        """Return the optimizer's moments for `opt`: those kept, or new (zeros) when there
        are none or they belong to another optimizer.

        Parameters
        ----------
        opt : fastmlp.optim.Optimizer
            The update rule that will read and write them.

        Returns
        -------
        state : fastmlp.optim.OptimizerState
            The moments, kept in `optimizer_state`.
        """
        if self.optimizer_state is None or self._optimizer_name != opt.name:
            self.optimizer_state = optim.OptimizerState.zeros(self.arch.n_params, self.dtype)
            self._optimizer_name = opt.name
        return self.optimizer_state

    def __getstate__(self):
        state = self.__dict__.copy()
        state["backend"] = self.backend.name  # by name: the registry's instance comes back
        for name in ("_disjoint_checked", "_disjoint_arrays"):  # checked again when used
            state.pop(name, None)
        state["scratch"] = {}  # buffers, many times the model's size: made again when used
        return state

    def __setstate__(self, state):
        state["backend"] = get_backend(state["backend"])
        state.setdefault("scratch", {})
        self.__dict__.update(state)

    def __repr__(self):
        return (f"MLP({list(self.arch.layer_sizes)}, hidden={self.arch.hidden_activation!r}, "
                f"output={self.arch.output_activation!r}, loss={self.arch.loss!r}, "
                f"dtype={self.dtype.name}, backend={self.backend.name!r})")
