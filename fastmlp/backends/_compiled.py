"""The Python side shared by the compiled twins (numba, cython).

Both compile the same kernels behind the same interface (_layout.py); this module turns a
twin's raw kernels into its Kernels (CompiledKernels), packs train_epochs' arguments into
_layout's bundles, and keeps the per-fit workspace, so the two backend modules hold only
what differs: their kernels and how they run threads.
"""
import contextlib
import functools
from typing import Callable, NamedTuple

import numpy as np

from .. import _threads, activations, losses
from . import _checks, _layout
from ._backend import Kernels

# Stand-in for an absent delta_in (the kernels are typed for arrays; they never touch it).
NO_DELTA = {np.dtype(t): np.empty((1, 1), t) for t in (np.float32, np.float64)}
NO_SAVED = {np.dtype(t): np.empty((3, 1), t) for t in (np.float32, np.float64)}
# The labels of a prediction that asks for none (the kernels are typed for an array).
NO_LABELS = np.empty(0, np.int64)
# The stop flag of a call that nothing interrupts (writable, as the signal's flag is: numba
# would compile a second specialisation for a read-only one).
NO_STOP = np.zeros(1, np.int64)
# A prepared job's orders and learning rates until a call gives them.
NO_ORDERS = np.zeros((1, 1), np.int64)
NO_RATES = np.ones(1)
# A dense X's stand-ins for the CSR arrays of a sparse one (values, indices, row pointers):
# int32 indices, as scipy keeps all but the largest matrices, so a dense fit and a sparse
# one share the kernels numba compiled.
NO_CSR = {np.dtype(t): (np.empty(0, t), np.empty(0, np.int32), np.zeros(1, np.int32))
          for t in (np.float32, np.float64)}
for _arrays in NO_CSR.values():
    for _a in _arrays:
        _a.setflags(write=False)


def readonly(a):
    """`a`, or a read-only view of it: what the numba kernels are compiled for, for every
    array they only read. Numba compiles a specialisation per argument type, writability
    included, so a writable X and a read-only (memory-mapped) one would each cost a
    compilation of the whole epoch; read-only views of both share one."""
    if not a.flags.writeable:
        return a
    view = a.view()
    view.setflags(write=False)
    return view


def _as_is(a):
    return a


class WorkspaceCache:
    """Buffers for one (architecture, batch size, dtype, chunks, sparse X): allocated once per
    fit, kept in the model's scratch between calls. A sparse X is read in place, row
    by row: no gathered copy of its minibatch rows (xb is a one-element stand-in)."""

    def __init__(self, arch, batch_size, dtype, n_chunks, sparse=False):
        self.key = (arch.layer_sizes, batch_size, dtype, n_chunks, sparse)
        self.batch_size = batch_size
        sizes = arch.layer_sizes
        rows = lambda width: np.empty(_layout.chunk_rows(batch_size, n_chunks, width), dtype)
        acts = rows(int(sum(sizes[1:])))
        self.arrays = dict(
            # parts: a gradient buffer per thread of a split minibatch (unread unless split)
            grad=np.empty(arch.n_params, dtype),
            parts=np.empty((n_chunks, arch.n_params) if n_chunks > 1 else (1, 1), dtype),
            part_losses=np.empty(n_chunks, np.float64), acts=acts, deltas=np.empty_like(acts),
            xb=np.empty(1, dtype) if sparse else rows(sizes[0]), yb=rows(sizes[-1]),
            wb=np.empty(batch_size, dtype))
        self.no_rows = np.empty((0, sizes[0]), dtype)  # a sparse X's dense stand-in
        self._bundles = {}
        self._network = None
        # the call's in/out records, refilled each call (allocating them costs more than
        # the kernel at batch-1 sizes)
        self.plateau = np.zeros(1, _layout.PLATEAU)
        _layout.fill_plateau(self.plateau, None)
        self.plateau_in_use = False  # plateau holds no rule, as fill_plateau(None) leaves it
        self.outcome = np.zeros(1, _layout.OUTCOME)
        self.ones = np.empty(0, dtype)  # unit sample weights, grown to the data's row count

    def network(self, arch, theta, inputs):
        """The Network bundle of (arch, θ), kept while θ is the same array; its layout arrays
        through `inputs` (readonly or _as_is)."""
        if self._network is None or self._network.theta is not theta:
            network = _layout.network_bundle(arch, theta)
            self._network = network._replace(offsets=inputs(network.offsets),
                                              sizes=inputs(network.sizes))
        return self._network

    def bundle(self, guard):
        """The Workspace bundle; `saved` (θ and both moments before an epoch) only if guarded."""
        if guard not in self._bundles:
            grad = self.arrays["grad"]
            saved = np.empty((3, grad.shape[0]), grad.dtype) if guard else NO_SAVED[grad.dtype]
            self._bundles[guard] = _layout.Workspace(saved=saved, **self.arrays)
        return self._bundles[guard]

    def unit_weights(self, n):
        if self.ones.shape[0] < n:
            self.ones = np.ones(n, self.ones.dtype)
        return self.ones[:n]


def _blas_team(n_chunks, team, requested):
    """An unsplit minibatch's GEMMs run BLAS's threads: as many as the team, when the machine
    has fewer free than were asked for (OpenBLAS's sums then differ in the last bits)."""
    if n_chunks == 1 and team < requested:
        return _threads.blas_thread_limit(team)
    return contextlib.nullcontext()


class RawKernels(NamedTuple):
    """A compiled twin's own functions, on the arrays and codes of _layout:
    forward(A_in, W, b, out, act, slope), backward(A_in, δ, W, grad_W, grad_b, δ_in, act_in,
    slope, want), for a CSR input sparse_forward(values, indices, indptr, rows, W, b, out, act,
    slope) and sparse_gradient(values, indices, indptr, rows, δ, grad_W, grad_b) over its rows
    `rows`, output_delta(A_out, Y, δ, sw, act, loss, has_sw, slope, tiny),
    train_epochs(network, data, update, workspace, control) and
    summed_gradient(network, data, workspace) (_layout's bundles), and
    predict(theta, offsets, sizes, hidden, output, slope, X, out, labels, label_kind,
    block_rows), every layer's forward pass in one call."""
    forward: Callable
    backward: Callable
    sparse_forward: Callable
    sparse_gradient: Callable
    output_delta: Callable
    train_epochs: Callable
    predict: Callable
    summed_gradient: Callable


class CompiledKernels(Kernels):
    """A compiled twin's Kernels around its RawKernels. `threads(n_chunks, team)` is the
    twin's context manager for a minibatch split over n_chunks chunks run by a team of `team`
    threads, `n_threads()` the thread count in force. read_only_inputs: pass every array a
    kernel only reads as a read-only view (numba's kernels are compiled per writability;
    Cython's const memoryviews take either)."""

    def __init__(self, raw: RawKernels, threads: Callable, n_threads: Callable,
                 read_only_inputs: bool = False):
        self.raw = raw
        self.threads = threads
        self.n_threads = n_threads
        self.ro = readonly if read_only_inputs else _as_is

    def forward_layer(self, A_in, W, b, activation, out, leaky_slope):
        ro = self.ro
        if _checks.is_sparse(A_in):
            self.raw.sparse_forward(ro(A_in.data), ro(A_in.indices), ro(A_in.indptr),
                                    ro(_all_rows(A_in)), ro(W), ro(b), out,
                                    activations.CODES[activation], leaky_slope)
        else:
            self.raw.forward(ro(A_in), ro(W), ro(b), out, activations.CODES[activation],
                             leaky_slope)
        return out

    def backward_layer(self, A_in, delta, W, grad_W, grad_b, delta_in, activation_in,
                       leaky_slope):
        ro = self.ro
        if _checks.is_sparse(A_in):  # the input layer: no delta_in
            self.raw.sparse_gradient(ro(A_in.data), ro(A_in.indices), ro(A_in.indptr),
                                     ro(_all_rows(A_in)), ro(delta), grad_W, grad_b)
            return
        want = delta_in is not None
        self.raw.backward(ro(A_in), ro(delta), ro(W), grad_W, grad_b,
                          delta_in if want else NO_DELTA[A_in.dtype],
                          activations.CODES[activation_in] if want else 0, leaky_slope, want)

    def output_delta(self, A_out, Y, activation, loss, delta, sample_weight, leaky_slope):
        ro = self.ro
        has_sw = sample_weight is not None
        sw = sample_weight if has_sw else np.ones(1, A_out.dtype)
        return self.raw.output_delta(ro(A_out), ro(Y), delta, ro(sw),
                                     activations.CODES[activation], losses.CODES[loss], has_sw,
                                     leaky_slope, np.finfo(A_out.dtype).tiny)

    def predict(self, arch, theta, X, out, labels, label_kind, block_rows):
        if not isinstance(X, np.ndarray):  # a CSR matrix: its first layer reads the rows
            return _predict_by_layers(self, arch, theta, X, out, labels, label_kind)
        ro = self.ro
        hidden, output, _ = arch.codes
        return self.raw.predict(ro(theta), ro(arch.offsets), ro(arch.sizes), hidden, output,
                                arch.leaky_slope, ro(X), out,
                                NO_LABELS if labels is None else labels, label_kind,
                                block_rows)

    def summed_gradient(self, arch, theta, X, Y, sample_weight, rows, grad, scratch):
        ro = self.ro
        dtype, sparse, n_rows = theta.dtype, _checks.is_sparse(X), rows.shape[0]
        cache = scratch.get("workspace")  # kept while the rows fit (buffers of their size)
        if cache is None or cache.key != (arch.layer_sizes, cache.batch_size, dtype, 1,
                                          sparse) or cache.batch_size < n_rows:
            cache = scratch["workspace"] = WorkspaceCache(arch, n_rows, dtype, 1, sparse)
        return self.raw.summed_gradient(
            cache.network(arch, theta, ro),
            _data_bundle(ro, X, Y, sample_weight, ro(rows[None]), cache),
            cache.bundle(False)._replace(grad=grad))

    def train_job(self, arch, theta, X, Y, sample_weight, batch_size, opt, state, guard,
                  scratch):
        return _CompiledJob(self, arch, theta, X, Y, sample_weight, batch_size, opt, state,
                            guard, scratch)


class _CompiledJob:
    """A compiled twin's train_epochs prepared once per fit: the Network, Data, Optimizer
    and Workspace bundles built here (the workspace kept in the caller's scratch, so calls
    that come in a row — partial_fit's — reuse it), the Control bundle per call. `run`
    passes what changes from call to call: the epochs' orders and rates, the plateau rule,
    the stop flag and the time budget."""

    def __init__(self, kernels, arch, theta, X, Y, sample_weight, batch_size, opt, state,
                 guard, scratch):
        self.kernels, self.arch, self.theta, self.state = kernels, arch, theta, state
        self.X, self.Y, self.sample_weight, self.opt = X, Y, sample_weight, opt
        self.guard, self.batch_size, self.scratch = bool(guard), int(batch_size), scratch
        self.requested = None  # the bundles are built by the first run

    def _prepare(self, requested):
        """The bundles, for a minibatch split as `requested` threads split it (the thread
        count may change between calls: thread_limit), and the workspace that split needs."""
        # A sparse X's minibatch is not split: each thread's own gradient buffer would be as
        # big as its first layer, zeroed and summed at every step.
        arch, state, ro = self.arch, self.state, self.kernels.ro
        sparse = _checks.is_sparse(self.X)
        self.requested = requested
        self.n_chunks, self.one_thread = _split(arch.layer_sizes, self.batch_size, requested,
                                                sparse)
        key = (arch.layer_sizes, self.batch_size, state.first.dtype, self.n_chunks, sparse)
        cache = self.scratch.get("training")
        if cache is None or cache.key != key:
            cache = self.scratch["training"] = WorkspaceCache(arch, *key[1:])
        self.cache, self.workspace = cache, cache.bundle(self.guard)
        self.network = cache.network(arch, self.theta, ro)
        data = _data_bundle(ro, self.X, self.Y, self.sample_weight, NO_ORDERS, cache)
        self.data_head, self.data_tail = data[:4], data[5:]  # around the orders
        self.hyper = _layout.hyper_record(self.opt)

    def run(self, orders, learning_rates, plateau=None, stop=None, time_budget=np.inf):
        """Kernels.train_epochs' calls on this job: (per-epoch sums, event)."""
        kernels, state = self.kernels, self.state
        requested = kernels.n_threads()
        if requested != self.requested:
            self._prepare(requested)
        cache = self.cache
        # The split follows the thread count asked for, the team what the machine has free
        # now: chunk c is thread c mod team's, so the weights do not depend on the team.
        n_chunks = self.n_chunks
        team = requested if self.one_thread else _threads.team_threads(requested)
        if n_chunks > 1:
            team = min(team, n_chunks)
        if plateau is not None or cache.plateau_in_use:  # (a rule's record, or no rule's)
            _layout.fill_plateau(cache.plateau, plateau)
            cache.plateau_in_use = plateau is not None
        cache.outcome[0] = (0, state.t, _layout.Event.COMPLETED)
        control = _layout.Control(self.batch_size, _layout.CHUNK_MIN_ROWS, self.guard,
                                  cache.plateau, cache.outcome,
                                  np.empty((learning_rates.shape[0], 2)),
                                  NO_STOP if stop is None else stop, float(time_budget),
                                  int(team))
        if n_chunks > 1 and team > 1:
            _threads.teams_start()
        ro = kernels.ro
        with kernels.threads(n_chunks, team), _blas_team(n_chunks, team, requested):
            kernels.raw.train_epochs(
                self.network, _layout.Data(*self.data_head, ro(orders), *self.data_tail),
                _layout.Update(self.hyper, ro(learning_rates), state.first, state.second),
                self.workspace, control)
        epochs, state.t, event = cache.outcome.item()
        if plateau is not None:
            _, _, plateau.best, plateau.count, _ = cache.plateau.item()
        return control.terms[:epochs], _layout.EVENTS[event]


def _data_bundle(ro, X, Y, sample_weight, orders, cache):
    """The Data bundle of checked X (dense or CSR), Y, sample weights (None: the cache's
    unit weights) and row orders; every array through `ro`."""
    sparse, has_sw = _checks.is_sparse(X), sample_weight is not None
    return _layout.Data(ro(cache.no_rows if sparse else X), ro(Y),
                        ro(sample_weight if has_sw else cache.unit_weights(X.shape[0])),
                        has_sw, orders, sparse,
                        *(map(ro, (X.data, X.indices, X.indptr)) if sparse
                          else NO_CSR[X.dtype]))


@functools.lru_cache(maxsize=256)
def _split(layer_sizes, batch_size, requested, sparse):
    """(chunks a minibatch is split in, whether its step runs on one thread whatever the
    team): _layout's size rules, once per shape (a small call's budget is microseconds)."""
    n_chunks = 1 if sparse else _layout.data_parallel_chunks(layer_sizes, batch_size, requested)
    return n_chunks, _layout.one_thread(layer_sizes, batch_size, n_chunks)


def _predict_by_layers(kernels, arch, theta, X, out, labels, label_kind):
    """Kernels.predict one forward_layer call after the other, for a sparse X (its first
    layer reads the CSR rows; its values are finite, checked with the matrix): the results
    of MLP's layer-by-layer forward pass. A logistic or tanh layer's overflow is hidden by
    its activation here."""
    coefs, intercepts = arch.views(theta)
    last = len(coefs) - 1
    overflow = -1
    A = X
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        dst = out if l == last else np.empty((X.shape[0], W.shape[1]), theta.dtype)
        A = kernels.forward_layer(A, W, b, arch.activation(l), dst, arch.leaky_slope)
        if overflow < 0 and not np.isfinite(dst).all():
            overflow = l
    if label_kind == _layout.Labels.ARGMAX:
        labels[:] = np.argmax(out, axis=1)
    elif label_kind == _layout.Labels.THRESHOLD:
        labels[:] = out[:, 0] > 0.5
    return overflow


def _all_rows(A):
    return np.arange(A.shape[0], dtype=np.int64)
