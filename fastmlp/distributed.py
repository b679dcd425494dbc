"""Data-parallel training on Dask: exact synchronous gradient sums across workers.

The backward pass produces *sums* over samples, so the gradient of a minibatch is exactly the
sum of the gradients of its rows held in each block: spreading the rows over workers changes
nothing but the speed (and the last bits of rounding).

    from dask.distributed import Client, LocalCluster
    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    X = dask.array.from_array(X_np, chunks=(10_000, -1))       # blocks of rows
    y = dask.array.from_array(y_np, chunks=(10_000,))
    est = fastmlp.distributed.fit(MLPClassifier(solver="sgd"), X, y)   # = est.fit(X_np, y_np)
    labels = fastmlp.distributed.predict(est, X)                 # blockwise, a dask array

The rows go once into one _Shard actor per worker (a contiguous row range, resident in the
network's dtype); each step the driver sends θ once to each shard, each returns its rows' loss
and gradient sums from the estimator's compiled backend, and the driver adds them in shard
order and applies the optimizer update exactly as `train_epoch` does. Minibatches are drawn
from the same seeded permutation as `estimator.fit`, so a rerun is identical and the result
equals the single-process fit. A shard whose worker is lost is rebuilt on a live worker from
its rows' source and asked again (the same bits: the shards are fixed row ranges); a task
that keeps failing is retried up to `retries` times, then the fit fails with a clear error.
"""
import time

import numpy as np

from sklearn.base import is_classifier

from . import estimators, training
from .backends._checks import check_finite, is_sparse, row_orders
from .backends.reference import guarded_epochs, mean_step, stop_requested

try:
    import dask.array as da
    from dask.core import flatten
    from distributed import futures_of, get_client
    from distributed.utils import CancelledError
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "fastmlp.distributed needs Dask: pip install 'fastmlp[dask]' "
        "(or pip install -e '.[dask]' in a checkout)") from exc

__all__ = ["fit", "predict", "predict_proba", "loss_and_gradient"]

_WORKER_NETS = {}  # per worker process: (spec, backend) -> MLP, reused across tasks


# -- what runs on the workers ----------------------------------------------------------------
def _worker_threads():
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return None


def _new_net(spec):
    from .model import MLP

    return MLP(spec["layer_sizes"], spec["hidden"], spec["output"], spec["loss"],
               leaky_slope=spec["leaky_slope"], dtype=spec["dtype"], backend=spec["backend"],
               n_threads=_worker_threads())


def _net_for(spec):
    key = tuple(sorted(spec.items()))
    net = _WORKER_NETS.get(key)
    if net is None:
        net = _WORKER_NETS[key] = _new_net(spec)
    return net


class _Shard:
    """A Dask actor on one worker: rows [lo, hi) of the data, resident and contiguous in the
    network's dtype, and the network whose backend computes their loss and gradient sums.
    The driver calls it once per step with θ; a minibatch's rows are read where they are,
    by the backend's compiled summed_gradient (gathered as a training step gathers its
    minibatch), never copied out in NumPy."""

    def __init__(self, spec, lo, hi, starts, n_blocks, *parts):
        self.net = _new_net(spec)  # its own θ: two shards may share a worker
        self.lo, self.n = lo, hi - lo

        def rows(blocks):  # the blocks overlapping [lo, hi), clipped to it
            pieces = [np.asarray(b)[max(lo - s, 0):max(min(hi - s, len(b)), 0)]
                      for s, b in zip(starts, blocks)]
            joined = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            return np.ascontiguousarray(joined, dtype=self.net.dtype)

        self.X = rows(parts[:n_blocks])
        self.Y = rows(parts[n_blocks:2 * n_blocks])
        self.W = rows(parts[2 * n_blocks:]) if len(parts) > 2 * n_blocks else None
        for name, a in (("X", self.X), ("y", self.Y), ("sample_weight", self.W)):
            if a is not None:
                check_finite(a, f"{name} (rows {lo}:{hi})")
        self.grad = np.empty_like(self.net.theta)
        self.scratch = {}  # the backend's buffers, reused step after step
        self.epochs = []

    def set_orders(self, orders):
        """The coming epochs' global row orders: for each, where this shard's rows come in
        it (sorted positions) and which local rows they are."""
        self.epochs = []
        for order in orders:
            mine = (order >= self.lo) & (order < self.lo + self.n)
            self.epochs.append((np.flatnonzero(mine), order[mine] - self.lo))

    def sums(self, theta, epoch=None, start=0, stop=0):
        """(Σ loss, Σ gradient in θ's dtype, Σ weights, seconds finding the rows, seconds
        computing) over this shard's rows among positions start:stop of epoch `epoch`'s
        order (epoch None: all its rows)."""
        began = time.perf_counter()
        net = self.net
        net.theta[...] = theta
        rows = None
        if epoch is not None:
            positions, local = self.epochs[epoch]
            rows = local[np.searchsorted(positions, start):np.searchsorted(positions, stop)]
        found = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore"):  # the driver's guard judges
            if rows is None:  # every row, in place (a full-batch step: lbfgs)
                loss = net.loss_and_gradient(self.X, self.Y, self.W, self.grad, self.scratch)
                weight = self.n if self.W is None else self.W.sum(dtype=np.float64)
            elif rows.shape[0] == 0:
                self.grad[...] = 0
                loss, weight = 0.0, 0.0
            else:
                loss = net.backend.unchecked.summed_gradient(
                    net.arch, net.theta, self.X, self.Y, self.W, rows, self.grad, self.scratch)
                weight = rows.shape[0] if self.W is None else np.take(self.W, rows).sum(
                    dtype=np.float64)
        return (float(loss), self.grad, float(weight), found - began,
                time.perf_counter() - found)


def _warm(spec):
    """Compile (numba) or load the kernels on a worker before the first step."""
    net = _net_for(spec)
    rng = np.random.default_rng(0)
    X = rng.random((4, net.arch.layer_sizes[0])).astype(net.dtype)
    Y = np.zeros((4, net.arch.layer_sizes[-1]), net.dtype)
    net.loss_and_gradient(X, Y, None, np.empty_like(net.theta))
    return net.backend.name


# -- the driver's view of the data -------------------------------------------------------------
#: What a step's shard call can fail with when its worker is lost (the actor goes with it).
_LOST = (RuntimeError, OSError, TimeoutError, CancelledError)


class _Shards:
    """The data as one _Shard actor per worker: shard k holds rows n·k/S to n·(k+1)/S (S
    shards, fixed when the fit starts), so a step's sums are added in shard order whatever
    worker holds a shard — a shard rebuilt after its worker died gives the same bits."""

    def __init__(self, client, X, Y, W, spec, retries):
        self.client, self.spec, self.retries = client, spec, retries
        self.arrays = [a for a in (X, Y, W) if a is not None]
        self.keys = [list(flatten(a.__dask_keys__())) for a in self.arrays]  # block by block
        self.held = {f.key: f for f in futures_of(self.arrays)}  # in memory already
        self.bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        self.n = int(self.bounds[-1])
        workers = sorted(client.scheduler_info()["workers"])
        n_shards = max(1, min(len(workers), self.n))
        self.ranges = [(self.n * k // n_shards, self.n * (k + 1) // n_shards)
                       for k in range(n_shards)]
        self.orders = None
        self.timings = dict.fromkeys(("round_trip", "slowest_shard", "rows", "compute",
                                      "reduce"), 0.0)
        self.timings.update(steps=0, rebuilt=0)
        began = time.perf_counter()
        self.actors = [None] * n_shards
        self._build_all(range(n_shards))
        self.timings["build"] = time.perf_counter() - began

    def _build_all(self, shards, rebuilding=False):
        """Build the actors of `shards` at once, each on a live worker (_placement); one
        whose worker is lost while it is built (a kill as the fit starts, say) is built again
        on a live worker, up to `retries` times. Builds after a loss count in
        timings["rebuilt"]."""
        pending, error = list(shards), None
        for attempt in range(self.retries + 1):
            if attempt:
                self.client.wait_for_workers(1, timeout=120)
            workers = sorted(self.client.scheduler_info()["workers"])
            placement = self._placement(pending, workers)
            submitted = {}
            for k in pending:  # every build under way before any is waited for
                try:
                    submitted[k] = self._submit(k, placement[k])
                except _LOST as exc:
                    submitted[k] = exc
            failed = []
            for k, built in submitted.items():
                try:
                    if isinstance(built, BaseException):
                        raise built
                    self.actors[k] = built.result()
                    if self.orders is not None:
                        self.actors[k].set_orders(self.orders).result()
                except _LOST as exc:
                    failed.append(k)
                    error = exc
                    continue
                self.timings["rebuilt"] += bool(rebuilding or attempt)
            if not failed:
                return
            pending = failed
        raise self._failed(error) from error

    def _failed(self, error):
        return RuntimeError(
            f"distributed fit failed: a shard's worker kept failing or dying after "
            f"{self.retries} retries ({type(error).__name__}: {error})")

    def _block_keys(self, blocks):
        """The keys of blocks `blocks` of every array, array by array."""
        return [self.keys[a][b] for a in range(len(self.arrays)) for b in blocks]

    def _placement(self, shards, workers):
        """{shard: worker}: each shard on the worker that already holds most of its rows of
        X (a persisted array's blocks: they need not cross the network), one shard per
        worker while there are enough; ties go round robin. The placement changes the
        speed only: a shard's rows, hence the bits, are fixed."""
        try:
            held = self.client.who_has(self.arrays[0])
        except Exception:  # nothing in memory to follow (who_has is advisory)
            held = {}
        placed = {}
        for k in shards:
            lo, hi = self.ranges[k]
            rows_on = dict.fromkeys(workers, 0)
            for b, key in enumerate(self.keys[0]):
                overlap = max(0, min(hi, int(self.bounds[b + 1])) - max(lo, int(self.bounds[b])))
                for worker in held.get(key, ()):
                    if worker in rows_on:
                        rows_on[worker] += overlap
            free = [w for w in workers if w not in placed.values()] or workers
            turn = workers[k % len(workers)]
            placed[k] = max(free, key=lambda w: (rows_on[w], w == turn))
        return placed

    def _submit(self, k, worker):
        """A future of shard k's actor on `worker`, its blocks computed from their source
        for it."""
        lo, hi = self.ranges[k]
        blocks = [b for b in range(len(self.bounds) - 1)
                  if self.bounds[b] < hi and self.bounds[b + 1] > lo]
        # a persisted array's blocks are passed as the futures they are (no alias task to
        # run first); the others are computed for the shard. Unrestricted: a task pinned to
        # a worker that dies waits for it forever
        futures = [self.held.get(key) for key in self._block_keys(blocks)]
        missing = [k for k, future in enumerate(futures) if future is None]
        if missing:
            parts = [array.blocks[b] for array in self.arrays for b in blocks]
            computed = self.client.compute([parts[k] for k in missing], retries=self.retries)
            for k, future in zip(missing, computed):
                futures[k] = future
        return self.client.submit(
            _Shard, self.spec, lo, hi, [int(self.bounds[b]) for b in blocks], len(blocks),
            *futures, actor=True, workers=[worker], allow_other_workers=True, pure=False,
            retries=self.retries)

    def set_orders(self, orders):
        self.orders = orders
        self._call(lambda actor: actor.set_orders(orders))

    def sums(self, theta, epoch=None, start=0, stop=0):
        """Σ loss, Σ gradient (θ's dtype), Σ weights over positions start:stop of the epoch's
        order (epoch None: every row), added in shard order."""
        began = time.perf_counter()
        results = self._call(lambda actor: actor.sums(theta, epoch, start, stop))
        received = time.perf_counter()
        loss, grad, weight = 0.0, np.zeros_like(theta), 0.0
        for part_loss, part_grad, part_weight, finding, computing in results:
            loss += part_loss
            grad += part_grad
            weight += part_weight
            self.timings["rows"] += finding / len(results)
            self.timings["compute"] += computing / len(results)
        self.timings["slowest_shard"] += max(r[3] + r[4] for r in results)
        self.timings["round_trip"] += received - began
        self.timings["reduce"] += time.perf_counter() - received
        self.timings["steps"] += 1
        return loss, grad, weight

    def _call(self, method):
        """method(actor) on every shard at once; a shard whose worker was lost is rebuilt
        (on a live worker) and asked again, up to `retries` times."""
        for attempt in range(self.retries + 1):
            calls = []
            for actor in self.actors:  # all asked before any is waited for
                try:
                    calls.append(method(actor))
                except _LOST as exc:  # an actor whose worker is known lost refuses the call
                    calls.append(exc)
            results, lost = [], []
            for k, call in enumerate(calls):
                try:
                    if isinstance(call, BaseException):
                        raise call
                    results.append(call.result())
                except _LOST as exc:
                    lost.append(k)
                    error = exc
            if not lost:
                return results
            if attempt == self.retries:
                break
            self.client.wait_for_workers(1, timeout=120)
            self._build_all(lost, rebuilding=True)
        raise self._failed(error) from error


class _DistributedNet:
    """The trainer's Network (training.Network) on Dask: the estimator's MLP holds θ and the
    optimizer state, the shards compute each minibatch's sums."""

    def __init__(self, net, shards):
        self.net, self.shards = net, shards
        self.arch, self.dtype, self.theta = net.arch, net.dtype, net.theta

    @property
    def optimizer_state(self):
        return self.net.optimizer_state

    def reset_optimizer(self):
        self.net.reset_optimizer()

    def output(self, X):
        return self.net.output(X)

    def loss_and_gradient(self, X, Y, sample_weight, grad):
        """Over every shard's rows (X, Y, sample_weight are the shards')."""
        loss, total, _ = self.shards.sums(self.theta)
        grad[...] = total
        return loss

    def training_job(self, X, Y, sample_weight, batch_size, opt):
        """The trainer's job over the shards' rows (X, Y, sample_weight are stand-ins)."""
        return _DistributedJob(self, batch_size, opt)

    def run_epochs(self, orders, learning_rates, batch_size, opt, plateau=None, stop=None,
                   time_budget=np.inf):
        """reference.guarded_epochs (guard on, plateau rule, stop flag, time budget) with each
        minibatch's sums computed by the shards."""
        state, n = self.net.optimizer_state_for(opt), self.shards.n
        orders = row_orders(orders, n)
        self.shards.set_orders(orders)  # once per call: each shard finds its rows
        started = [0]  # epochs begun: epoch e uses orders[e] (orders[0] if there is one)

        def epoch(order, epoch_opt, stop):
            index = started[0] if orders.shape[0] > 1 else 0
            started[0] += 1
            return self._epoch(index, batch_size, epoch_opt, state, stop)

        terms, event = guarded_epochs(
            epoch,
            self.theta, state, orders, learning_rates, opt, n, True, plateau, stop,
            time_budget)
        return terms / n, event

    def _epoch(self, epoch, batch_size, opt, state, stop):
        """One epoch: (Σ_b mean loss_b·rows_b, Σ_b mean penalty_b·rows_b), as reference._epoch
        (None when the stop flag was raised)."""
        data_term = penalty_term = 0.0
        for start in range(0, self.shards.n, batch_size):
            stop_at = min(start + batch_size, self.shards.n)
            loss, grad, weight = self.shards.sums(self.theta, epoch, start, stop_at)
            if weight != 0:  # every weight zero: no mean gradient (0/0), so no step
                loss, penalty = mean_step(self.arch, self.theta, grad, loss, weight, opt, state)
                data_term += loss * (stop_at - start)
                penalty_term += penalty * (stop_at - start)
            if stop_requested(stop):
                return None
        return data_term, penalty_term


class _DistributedJob:
    """training.Network's job on Dask: each run one _DistributedNet.run_epochs call."""

    def __init__(self, net, batch_size, opt):
        self.net, self.batch_size, self.opt = net, batch_size, opt

    def run(self, orders, learning_rates, plateau=None, stop=None, time_budget=np.inf):
        return self.net.run_epochs(orders, learning_rates, self.batch_size, self.opt, plateau,
                                   stop, time_budget)


def _spec(net):
    """What a worker needs to build the same network (_net_for)."""
    return dict(layer_sizes=tuple(net.arch.layer_sizes), hidden=net.arch.hidden_activation,
                output=net.arch.output_activation, loss=net.arch.loss,
                leaky_slope=net.arch.leaky_slope, dtype=net.dtype.name,
                backend=net.backend.name)


def _distributed_network(client, net, X, Y, W, retries):
    """The trainer's Network for the MLP `net` over dask rows X, Y (encoded) and weights W."""
    spec = _spec(net)
    client.run(_warm, spec, on_error="ignore")  # compile/load the kernels on every worker
    return _DistributedNet(net, _Shards(client, X, Y, W, spec, retries))


# -- public API --------------------------------------------------------------------------------
def _as_dask(a, name):
    if hasattr(a, "to_dask_array"):  # dask DataFrame / Series
        a = a.to_dask_array(lengths=True)
    if not isinstance(a, da.Array):
        raise TypeError(f"{name} must be a dask array or dask dataframe chunked by rows, "
                        f"got {type(a).__name__}")
    if any(np.isnan(rows) for rows in a.chunks[0]):
        raise ValueError(
            f"{name} has unknown chunk sizes (a dask array taken from a dataframe's .values, "
            f"or filtered by a mask, does not know its blocks' lengths): compute them first "
            f"with {name}.compute_chunk_sizes(), or take a dask dataframe's rows with "
            f".to_dask_array(lengths=True)")
    if is_sparse(getattr(a, "_meta", None)):
        raise TypeError(f"{name} has sparse blocks: Dask training takes dense blocks (fit "
                        "sparse data in one process: fastmlp's estimators keep it sparse)")
    return a


def fit(estimator, X, y, sample_weight=None, client=None, retries=3, timings=None):
    """Fit a fastmlp MLPClassifier/MLPRegressor on dask data as `estimator.fit` would on the
    concatenated rows (sgd and adam minibatches split across blocks, lbfgs full-batch).

    X: dask array (n_samples, n_features) or dask DataFrame, chunked by rows only; y and
    sample_weight: dask arrays/Series with the same row chunks. client: a
    distributed.Client (default: the current one). retries: how often a failed or lost task
    is retried before the fit fails (a shard whose worker died is rebuilt on a live one).
    timings: a dict to fill with where the steps' time went, seconds summed over the steps:
    `round_trip` (driver to shards and back: serialising θ and the sums, the calls, the
    shards' work), `slowest_shard` (the longest shard's rows + compute, which the step
    waits for), `rows` (finding a shard's rows of the minibatch) and `compute` (each
    averaged over the shards) and the driver's `reduce`; `steps`, `rebuilt` (shards rebuilt
    after their worker died) and `build` (seconds building the shards). Returns the fitted
    estimator. It is the estimator's own fit (parameters, label encoding, warm_start, the
    trainer, a failed refit undone) with its rows on the workers.
    """
    from .estimators import MLPClassifier, MLPRegressor

    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError("fit() takes a fastmlp MLPClassifier or MLPRegressor")
    if estimator.early_stopping:
        raise ValueError("early_stopping is not supported by distributed.fit: hold out a "
                         "validation set and score it with distributed.predict")
    X, y = _as_dask(X, "X"), _as_dask(y, "y")
    if X.ndim != 2 or len(X.chunks[1]) != 1:
        raise ValueError("X must be 2-D and chunked by rows only (one column chunk)")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    y = y.rechunk({0: X.chunks[0]})
    W = None
    if sample_weight is not None:
        W = _as_dask(sample_weight, "sample_weight").rechunk({0: X.chunks[0]})
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    source = _DaskRows(estimator, X.astype(dtype), y, W, client or get_client(), retries,
                       timings)
    try:
        return estimators.fit_from(estimator, source)
    except BaseException as exc:
        if type(exc).__name__ in ("KilledWorker", "FutureCancelledError", "CancelledError"):
            raise RuntimeError(
                f"distributed fit failed: a task kept failing or killing its worker after "
                f"{retries} retries ({type(exc).__name__}: {exc})") from exc
        raise


class _DaskRows:
    """A fit's data on Dask, as the estimator's fit asks a source for it (the in-process
    counterpart: estimators._InMemory): the targets encoded block by block, the rows in one
    _Shard per worker, and the trainer's Network over them (_DistributedNet)."""

    def __init__(self, estimator, X, y, W, client, retries, timings):
        self.estimator, self.X, self.y, self.W = estimator, X, y, W
        self.client, self.retries, self.timings = client, retries, timings
        self.proxy = None

    def prepare(self, first_pass, incremental):
        X, y, W, dtype = self.X, self.y, self.W, self.X.dtype.type
        if W is not None and not float(W.sum().compute()) > 0:
            raise ValueError(training.ZERO_WEIGHTS)
        if is_classifier(self.estimator):
            labels = np.unique(y.compute()) if y.ndim == 1 else np.eye(y.shape[1], dtype=int)
            encode, width = estimators.target_encoder(self.estimator, labels, first_pass)
            if y.ndim == 1:
                Y = y.map_blocks(encode, dtype, new_axis=1, chunks=(y.chunks[0], (width,)),
                                 dtype=dtype)
            else:
                Y = y.astype(dtype)
        else:
            Y = (y[:, None] if y.ndim == 1 else y).astype(dtype)
        self.estimator.n_features_in_ = X.shape[1]
        self.Y = Y
        return estimators.FitData(X.shape[0], X.shape[1], Y.shape[1], np.dtype(dtype))

    def check_memory(self, layer_units, first_pass):
        """The driver holds θ and the optimizer's moments only; each shard its rows."""

    def network(self, net):
        """(the trainer's Network over the shards, stand-ins for X and Y of the right row
        count — the network reads the shards' rows —, the weights where L-BFGS reads their
        sum)."""
        self.proxy = _distributed_network(self.client, net, self.X, self.Y, self.W,
                                          self.retries)
        rows_only = np.empty((self.proxy.shards.n, 0), net.dtype)
        weights = None
        if self.W is not None and self.estimator.solver == "lbfgs":
            weights = np.asarray(self.W.compute(), net.dtype)
        return self.proxy, rows_only, rows_only, weights

    def finish(self, net, incremental):
        if self.timings is not None and self.proxy is not None:
            self.timings.update(self.proxy.shards.timings)


def predict(estimator, X):
    """Blockwise estimator.predict on a dask array: a dask array of predictions."""
    X = _as_dask(X, "X")
    sample = estimator.predict(np.zeros((1, X.shape[1]), X.dtype))
    if sample.ndim == 2:  # multilabel, multi-output
        return X.map_blocks(estimator.predict, dtype=sample.dtype,
                            chunks=(X.chunks[0], (sample.shape[1],)))
    return X.map_blocks(estimator.predict, drop_axis=1, dtype=sample.dtype)


def predict_proba(estimator, X):
    """Blockwise estimator.predict_proba on a dask array."""
    X = _as_dask(X, "X")
    n_classes = estimator.predict_proba(np.zeros((1, X.shape[1]), X.dtype)).shape[1]
    return X.map_blocks(estimator.predict_proba, dtype=estimator.coefs_[0].dtype,
                        chunks=(X.chunks[0], (n_classes,)))


def loss_and_gradient(estimator, X, Y, client=None):
    """(Σ loss, Σ gradient as a flat vector) of a fitted estimator's network over dask rows X
    and encoded targets Y (2-D, one column per output), summed over the shards."""
    client = client or get_client()
    X, Y = _as_dask(X, "X"), _as_dask(Y, "Y")
    net = estimators.network_of(estimator)
    proxy = _distributed_network(client, net, X.astype(net.dtype),
                                 Y.rechunk({0: X.chunks[0]}).astype(net.dtype), None, 3)
    loss, grad, _ = proxy.shards.sums(net.theta.copy())
    return loss, grad
