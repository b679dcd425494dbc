"""The kernel contract as classes: `Kernels` (what a backend computes, on arguments checked
already) and `Backend` (a named backend: its kernels, and the contract's public functions,
each checking its arguments before any kernel runs). The registry (`get_backend`) returns
Backend instances: the reference's (reference.py), numba's and cython's (_compiled.py).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .. import activations
from ._layout import prediction_rows
from ._checks import (check_backward, check_forward, check_output_delta, check_predict,
                        check_stop, check_summed_gradient, check_train_epochs)


class Kernels(ABC):
    """A backend's kernels on arguments already checked: the shapes, dtypes and contiguity
    that Backend's public functions test, finite inputs, orders (k, n) int64 and in bounds,
    learning_rates a contiguous float64 array. For callers that validated them at their own
    edge, as MLP does; called with anything else they may crash the process."""

    @abstractmethod
    def forward_layer(self, A_in, W, b, activation, out, leaky_slope):
        """out = g(A_in @ W + b); returns out."""

    @abstractmethod
    def backward_layer(self, A_in, delta, W, grad_W, grad_b, delta_in, activation_in,
                       leaky_slope):
        """grad_W = A_inᵀ δ, grad_b = Σ_rows δ and, if delta_in is not None,
        δ_in = (δ Wᵀ) ⊙ g'(A_in)."""

    @abstractmethod
    def output_delta(self, A_out, Y, activation, loss, delta, sample_weight, leaky_slope):
        """δ_out (rows scaled by sample_weight) into delta; returns the summed loss."""

    @abstractmethod
    def summed_gradient(self, arch, theta, X, Y, sample_weight, rows, grad, scratch):
        """Backend.summed_gradient on checked arguments; scratch is a dict the caller keeps
        between calls (the compiled kernels' buffers live there)."""

    @abstractmethod
    def train_job(self, arch, theta, X, Y, sample_weight, batch_size, opt, state, guard,
                  scratch):
        """Backend.train_epochs prepared once for a fit, on checked arguments: an object
        whose run(orders, learning_rates, plateau=None, stop=None, time_budget=inf) makes
        one train_epochs call — (terms, event) — passing only what changes between calls.
        scratch: a dict the caller keeps, where the job's workspace lives between jobs."""

    def train_epochs(self, arch, theta, X, Y, sample_weight, orders, batch_size, opt, state,
                     learning_rates, guard, plateau, stop=None, time_budget=np.inf,
                     scratch=None):
        """Backend.train_epochs on checked arguments: (terms, event)."""
        job = self.train_job(arch, theta, X, Y, sample_weight, batch_size, opt, state, guard,
                             {} if scratch is None else scratch)
        return job.run(orders, learning_rates, plateau, stop, time_budget)

    @abstractmethod
    def predict(self, arch, theta, X, out, labels, label_kind, block_rows):
        """Backend.predict on checked arguments; labels is an int64 (n,) array, or None when
        label_kind is OUTPUT_ONLY. Returns out."""


class Backend:
    """A backend: its `name`, its `unchecked` Kernels, and the public functions of the kernel
    contract, which check every argument and then call them."""

    def __init__(self, name: str, kernels: Kernels):
        self.name = name
        self.unchecked = kernels

    def __repr__(self):
        return f"<fastmlp backend {self.name!r}>"

    def __reduce__(self):  # a backend pickles as its name: the registry's instance comes back
        from . import get_backend

        return get_backend, (self.name,)

    def forward_layer(self, A_in, W, b, activation, out, leaky_slope=0.01):
        """out = g(A_in @ W + b); returns out. Non-finite inputs are rejected; finite inputs
        whose products overflow give non-finite outputs, which the caller must test."""
        A_in, W, b = check_forward(A_in, W, b, activation, out)
        return self.unchecked.forward_layer(A_in, W, b, activation, out,
                                            activations.check_leaky_slope(leaky_slope))

    def backward_layer(self, A_in, delta, W, grad_W, grad_b, delta_in=None, activation_in=None,
                       leaky_slope=0.01):
        """grad_W = A_inᵀ δ, grad_b = Σ_rows δ and, if delta_in is given,
        δ_in = (δ Wᵀ) ⊙ g'(A_in)."""
        A_in, delta, W = check_backward(A_in, delta, W, grad_W, grad_b, delta_in, activation_in)
        self.unchecked.backward_layer(A_in, delta, W, grad_W, grad_b, delta_in, activation_in,
                                      activations.check_leaky_slope(leaky_slope))

    def output_delta(self, A_out, Y, activation, loss, delta, sample_weight=None,
                     leaky_slope=0.01):
        """Write δ_out (rows scaled by sample_weight) into delta; return the (weighted) summed
        loss."""
        A_out, Y, sample_weight = check_output_delta(A_out, Y, activation, loss, delta,
                                                     sample_weight)
        return self.unchecked.output_delta(A_out, Y, activation, loss, delta, sample_weight,
                                           activations.check_leaky_slope(leaky_slope))

    def predict(self, arch, theta, X, out, labels=None, label_kind="output_only"):
        """The network's forward pass over X, every layer in one call: the output layer's
        activations into out (n, n_outputs) and, for label_kind "argmax" or "threshold",
        each row's class index into labels (n,) int64 — the first largest output, or the
        single output above one half. Returns out. Non-finite inputs are rejected; finite
        ones that overflow give non-finite outputs, which the caller must test."""
        theta, X, kind = check_predict(arch, theta, X, out, labels, label_kind)
        self.unchecked.predict(arch, theta, X, out, labels, kind,
                               prediction_rows(arch.layer_sizes, theta.dtype.itemsize))
        return out

    def summed_gradient(self, arch, theta, X, Y, sample_weight, rows, grad, scratch=None):
        """One minibatch's forward and backward passes over rows `rows` of X, Y and
        sample_weight, read where they are (the compiled kernels gather them as a training
        step does): Σ_i w_i ∇L_i over those rows (no L2 term) into grad; returns their summed
        loss. θ is not changed. What a data-parallel worker computes for the rows it holds
        (fastmlp.distributed). scratch: a dict kept between calls, which then allocate
        nothing (None: buffers made for this call)."""
        X, Y, sample_weight, rows = check_summed_gradient(arch, theta, X, Y, sample_weight,
                                                          rows, grad)
        return self.unchecked.summed_gradient(arch, theta, X, Y, sample_weight, rows, grad,
                                              {} if scratch is None else scratch)

    def train_epochs(self, arch, theta, X, Y, sample_weight, orders, batch_size, opt, state,
                     learning_rates, guard=True, plateau=None, stop=None, time_budget=None,
                     scratch=None):
        """Up to len(learning_rates) epochs: epoch e takes its rows in orders[e] (orders[0]
        every epoch when orders has one row; None: rows in order) at learning rate
        learning_rates[e].

        guard: an epoch whose loss or weights are not finite is undone — θ, the optimizer
        moments and t put back as they were before it — and ends the call with event
        "diverged". plateau: a stopping.Plateau updated with each epoch's loss; when it fires,
        the call ends after that epoch with event "plateau". stop: a one-element int64
        array read after every minibatch (fastmlp.interrupts raises it on Ctrl-C); once it
        is non-zero the call ends with event "interrupted", the epoch under way undone when
        guarded (left as far as it got otherwise). time_budget: seconds after which no new
        epoch starts (the call ends "completed" with fewer epochs; None: no limit).
        Otherwise "completed". Returns (terms, event): terms[e] = (Σ_b mean loss_b × rows_b,
        Σ_b mean L2 penalty_b × rows_b) for each completed epoch (their sum / n_samples is
        scikit-learn's loss). A minibatch whose sample weights are all zero has no mean
        gradient: it makes no step (Adam's t stays) and adds nothing to terms. θ and the
        moments may not share memory with the data (ValueError). scratch: a dict kept
        between calls, where the compiled backends keep their workspace (None: made for
        this call)."""
        X, Y, sample_weight, orders, batch_size, learning_rates = check_train_epochs(
            arch, theta, X, Y, sample_weight, orders, batch_size, state, learning_rates)
        stop, time_budget = check_stop(stop, time_budget)
        return self.unchecked.train_epochs(arch, theta, X, Y, sample_weight, orders,
                                           batch_size, opt, state, learning_rates, guard,
                                           plateau, stop, time_budget, scratch)
