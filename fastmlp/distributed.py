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

Each step the driver sends the weights inside one task per block holding rows of the
minibatch; each task returns its rows' loss and gradient sums from the estimator's compiled
backend; the driver adds them in block order and applies the optimizer update exactly as
`train_epoch` does. Minibatches are drawn from the same seeded permutation as
`estimator.fit`, so a rerun is identical and the result equals the single-process fit.
A worker lost mid-step loses only cached blocks, which Dask recomputes from their source; a
task is retried up to `retries` times, then the fit fails with a clear error.
"""
import numpy as np

from . import optim
from .backends._contract import check_finite, row_orders
from .backends.reference import guarded_epochs, stop_requested

try:
    import dask.array as da
    from distributed import get_client, wait
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


def _net_for(spec):
    from .model import MLP

    key = tuple(sorted(spec.items()))
    net = _WORKER_NETS.get(key)
    if net is None:
        net = _WORKER_NETS[key] = MLP(
            spec["layer_sizes"], spec["hidden"], spec["output"], spec["loss"],
            leaky_slope=spec["leaky_slope"], dtype=spec["dtype"], backend=spec["backend"],
            n_threads=_worker_threads())
    return net


def _block_sums(X, Y, W, rows, theta, spec):
    """(Σ loss, Σ gradient, Σ weights) over `rows` of one block (all rows when None)."""
    net = _net_for(spec)
    net.theta[...] = theta
    if rows is not None:
        X, Y = X[rows], Y[rows]
        W = None if W is None else W[rows]
    X = np.ascontiguousarray(X, dtype=net.dtype)
    Y = np.ascontiguousarray(Y, dtype=net.dtype)
    W = None if W is None else np.ascontiguousarray(W, dtype=net.dtype)
    for name, a in (("X", X), ("y", Y), ("sample_weight", W)):
        if a is not None:
            check_finite(a, f"{name} (a block's rows)")
    grad = np.empty_like(net.theta)
    with np.errstate(over="ignore", invalid="ignore"):  # the driver's guard judges NaN/inf
        loss = net.loss_and_gradient(X, Y, W, grad)
    return loss, grad, float(X.shape[0] if W is None else W.sum())


def _warm(spec):
    """Compile (numba) or load the kernels on a worker before the first step."""
    net = _net_for(spec)
    rng = np.random.default_rng(0)
    X = rng.random((4, net.arch.layer_sizes[0])).astype(net.dtype)
    Y = np.zeros((4, net.arch.layer_sizes[-1]), net.dtype)
    net.loss_and_gradient(X, Y, None, np.empty_like(net.theta))
    return net.backend.name


# -- the driver's view of the data -------------------------------------------------------------
class _Blocks:
    """Row blocks of X, encoded targets and weights, held (persisted) on the workers."""

    def __init__(self, client, X, Y, W, retries):
        self.client, self.retries = client, retries
        X, Y = client.persist([X, Y])
        W = client.persist(W) if W is not None else None
        self.x = client.compute(X.to_delayed().ravel().tolist())
        self.y = client.compute(Y.to_delayed().ravel().tolist())
        self.w = client.compute(W.to_delayed().ravel().tolist()) if W is not None else None
        self.bounds = np.concatenate([[0], np.cumsum(X.chunks[0])])
        self.n = int(self.bounds[-1])

    def sums(self, theta, spec, rows=None):
        """Σ loss, Σ gradient, Σ weights over global row indices `rows` (all when None),
        added block by block in block order (a fixed order: reruns are identical)."""
        futures = []
        for b in range(len(self.x)):
            lo, hi = self.bounds[b], self.bounds[b + 1]
            if hi == lo:  # an empty block adds nothing (and a network takes no empty X)
                continue
            if rows is None:
                local = None
            else:
                local = rows[(rows >= lo) & (rows < hi)] - lo
                if local.size == 0:
                    continue
            futures.append(self.client.submit(
                _block_sums, self.x[b], self.y[b], self.w[b] if self.w else None, local, theta,
                spec, pure=False, retries=self.retries))
        wait(futures)
        results = self.client.gather(futures)  # raises KilledWorker etc. after the retries
        loss, grad, weight = 0.0, np.zeros_like(theta), 0.0
        for part_loss, part_grad, part_weight in results:
            loss += part_loss
            grad += part_grad
            weight += part_weight
        return loss, grad, weight


class _DistributedNet:
    """The trainer's Network (_solvers.Network) on Dask: the estimator's MLP holds θ and the
    optimizer state, the blocks compute each minibatch's sums."""

    def __init__(self, net, blocks, spec):
        self.net, self.blocks, self.spec = net, blocks, spec
        self.arch, self.dtype, self.theta = net.arch, net.dtype, net.theta

    @property
    def optimizer_state(self):
        return self.net.optimizer_state

    def reset_optimizer(self):
        self.net.reset_optimizer()

    def output(self, X):
        return self.net.output(X)

    def loss_and_gradient(self, X, Y, sample_weight, grad):
        """Over every block's rows (X, Y, sample_weight are the blocks')."""
        loss, total, _ = self.blocks.sums(self.theta.copy(), self.spec)
        grad[...] = total
        return loss

    def run_epochs(self, X, Y, sample_weight, orders, learning_rates, batch_size, opt,
                   plateau=None, stop=None, time_budget=np.inf):
        """reference.guarded_epochs (guard on, plateau rule, stop flag, time budget) with each
        minibatch's sums computed by the blocks; X, Y, sample_weight are the blocks'."""
        state, n = self.net._optimizer_state_for(opt), self.blocks.n
        terms, event = guarded_epochs(
            lambda order, epoch_opt, stop: self._epoch(order, batch_size, epoch_opt, state,
                                                       stop),
            self.theta, state, row_orders(orders, n), learning_rates, opt, n, True, plateau,
            stop, time_budget)
        return terms / n, event

    def _epoch(self, order, batch_size, opt, state, stop):
        """One epoch: (Σ_b mean loss_b·rows_b, Σ_b mean penalty_b·rows_b), as reference._epoch
        (None when the stop flag was raised)."""
        mask = self.arch.coef_mask(dtype=self.dtype)
        data_term = penalty_term = 0.0
        for start in range(0, self.blocks.n, batch_size):
            rows = order[start:start + batch_size]
            loss, grad, weight = self.blocks.sums(self.theta.copy(), self.spec, rows)
            if weight == 0:  # every weight zero: no mean gradient (0/0), so no step
                if stop_requested(stop):
                    return None
                continue
            weight = self.dtype.type(weight)
            penalty = 0.5 * opt.l2 * float(np.dot(self.theta * mask, self.theta))
            grad = grad + opt.l2 * (self.theta * mask)
            grad /= weight
            optim.step(self.theta, grad, opt, state)
            data_term += loss / weight * len(rows)
            penalty_term += penalty / weight * len(rows)
            if stop_requested(stop):
                return None
        return data_term, penalty_term


def _spec(net):
    """What a worker needs to build the same network (_net_for)."""
    return dict(layer_sizes=tuple(net.arch.layer_sizes), hidden=net.arch.hidden_activation,
                output=net.arch.output_activation, loss=net.arch.loss,
                leaky_slope=net.arch.leaky_slope, dtype=net.dtype.name,
                backend=net.backend.name)


def _distributed_network(client, net, X, Y, W, retries):
    """The trainer's Network for the MLP `net` over dask rows X, Y (encoded) and weights W."""
    spec = _spec(net)
    client.run(_warm, spec)  # compile/load the kernels on every worker once
    return _DistributedNet(net, _Blocks(client, X, Y, W, retries), spec)


# -- public API --------------------------------------------------------------------------------
def _as_dask(a, name):
    if hasattr(a, "to_dask_array"):  # dask DataFrame / Series
        a = a.to_dask_array(lengths=True)
    if not isinstance(a, da.Array):
        raise TypeError(f"{name} must be a dask array or dask dataframe chunked by rows, "
                        f"got {type(a).__name__}")
    return a


def fit(estimator, X, y, sample_weight=None, client=None, retries=3):
    """Fit a fastmlp MLPClassifier/MLPRegressor on dask data as `estimator.fit` would on the
    concatenated rows (sgd and adam minibatches split across blocks, lbfgs full-batch).

    X: dask array (n_samples, n_features) or dask DataFrame, chunked by rows only; y and
    sample_weight: dask arrays/Series with the same row chunks. client: a
    distributed.Client (default: the current one). retries: how often a failed or lost task
    is retried before the fit fails. Returns the fitted estimator.
    """
    from .estimators import MLPClassifier, MLPRegressor

    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError("fit() takes a fastmlp MLPClassifier or MLPRegressor")
    if estimator.early_stopping:
        raise ValueError("early_stopping is not supported by distributed.fit: hold out a "
                         "validation set and score it with distributed.predict")
    client = client or get_client()
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
    X = X.astype(dtype)

    kept = estimator._fitted_state()
    try:
        return _fit(estimator, X, y, W, client, retries)
    except BaseException:
        if kept is not None:  # a refit that fails leaves the model fitted before
            estimator._restore_fitted_state(kept)
        raise


def _fit(est, X, y, W, client, retries):
    """fit on checked dask arrays (X in its float dtype, y and W chunked as X)."""
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state

    from . import _solvers
    from .estimators import MLPClassifier

    dtype = X.dtype.type
    est._check_params()
    if W is not None and not float(W.sum().compute()) > 0:
        raise ValueError(_solvers.ZERO_WEIGHTS)
    hidden = est._hidden_sizes()
    if isinstance(est, MLPClassifier):
        if y.ndim == 1:
            classes = np.unique(y.compute())
            binarizer = LabelBinarizer().fit(classes)
        else:
            binarizer = LabelBinarizer().fit(np.eye(y.shape[1], dtype=int))
        est._label_binarizer, est.classes_ = binarizer, binarizer.classes_
        if y.ndim == 1:
            width = 1 if binarizer.y_type_ == "binary" else len(binarizer.classes_)
            Y = y.map_blocks(lambda b: binarizer.transform(b).astype(dtype), new_axis=1,
                             chunks=(y.chunks[0], (width,)), dtype=dtype)
        else:
            Y = y.astype(dtype)
        n_outputs = Y.shape[1]
    else:
        Y = (y[:, None] if y.ndim == 1 else y).astype(dtype)
        n_outputs = Y.shape[1]
    est.n_features_in_ = X.shape[1]
    rng = check_random_state(est.random_state)
    layer_units = [X.shape[1], *hidden, n_outputs]
    est._initialize(np.zeros((1, n_outputs)), layer_units, dtype, rng)
    net = est._net
    proxy = _distributed_network(client, net, X, Y, W, retries)
    blocks = proxy.blocks
    rows_only = np.empty((blocks.n, 0), dtype)  # the trainer reads only the row count
    state = est._training_state()
    task = _solvers.Task(est._loss_scale(), False, est._decode, est._score_net, est._progress())
    params = est.get_params()
    try:
        if est.solver == "lbfgs":  # only Σ weights is read from the weights here
            weights = None if W is None else np.asarray(W.compute(), dtype)
            _solvers.fit_lbfgs(params, task, state, proxy, rows_only, rows_only, weights)
        else:
            _solvers.fit_stochastic(params, task, state, proxy, rows_only, rows_only, None, rng,
                                    False)
    except Exception as exc:
        if type(exc).__name__ in ("KilledWorker", "FutureCancelledError", "CancelledError"):
            raise RuntimeError(
                f"distributed fit failed: a task kept failing or killing its worker after "
                f"{retries} retries ({type(exc).__name__}: {exc})") from exc
        raise
    finally:
        est._apply_training_state(state)
        est._sync_attributes()
    return est


def predict(estimator, X):
    """Blockwise estimator.predict on a dask array: a dask array of predictions."""
    X = _as_dask(X, "X")
    n_out = getattr(estimator, "n_outputs_", 1)
    multi = n_out > 1 and not (hasattr(estimator, "classes_")
                               and estimator._label_binarizer.y_type_ == "multiclass")
    sample = estimator.predict(np.zeros((1, X.shape[1]), X.dtype))
    if multi:
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
    and encoded targets Y (2-D, one column per output), summed over the blocks."""
    client = client or get_client()
    X, Y = _as_dask(X, "X"), _as_dask(Y, "Y")
    net = estimator._net
    proxy = _distributed_network(client, net, X.astype(net.dtype),
                                 Y.rechunk({0: X.chunks[0]}).astype(net.dtype), None, 3)
    blocks, spec = proxy.blocks, proxy.spec
    loss, grad, _ = blocks.sums(net.theta.copy(), spec)
    return loss, grad
