"""Fingerprints of trained weights: a refactoring of the kernels must leave them unchanged.

Trains a grid of small networks — every backend, dtype, hidden activation, optimizer,
thread count, a minibatch small enough to run on one thread and one large enough to be
split, sample weights, L2, a plateau stop and a divergence — and prints one line per case:
its name and a hash of the final θ, the moments, t and the event. Run it before and after a
change, on the same machine, and compare:

    python -m bench.fingerprints > before.txt   # (old code)
    python -m bench.fingerprints > after.txt    # (new code)
    diff before.txt after.txt

A case prints `error: ...` instead of a hash where the installed code cannot run it.
"""
import argparse
import hashlib
import itertools
import sys
import warnings

import numpy as np

import fastmlp
from fastmlp import MLP, MLPClassifier, MLPRegressor
from fastmlp.optim import Optimizer
from fastmlp.stopping import Plateau

HIDDEN = ("identity", "logistic", "tanh", "relu", "leaky_relu")
OPTIMIZERS = {
    "sgd": dict(optimizer="sgd"),
    "momentum": dict(optimizer="sgd", momentum=0.9),
    "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True),
    "adam": dict(optimizer="adam"),
}


def digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def kernel_cases(backends):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12))
    labels = rng.integers(0, 4, 300)
    Y = np.eye(4)[labels]
    w = rng.uniform(0.2, 2.0, 300)
    orders = np.stack([rng.permutation(300) for _ in range(3)])
    rates = [0.05, 0.03, 0.02]
    for backend, dtype, hidden, (opt_name, opt), threads, batch in itertools.product(
            backends, ("float32", "float64"), HIDDEN, OPTIMIZERS.items(), (1, 2, 3), (16, 150)):
        if hidden not in ("relu", "logistic") and (threads == 3 or opt_name != "adam"):
            continue  # keep the grid small: every activation once per backend/dtype/batch
        weighted = batch == 150
        name = f"kernel {backend} {dtype} {hidden} {opt_name} threads={threads} batch={batch}"
        yield name, lambda b=backend, d=dtype, h=hidden, o=opt, t=threads, bs=batch, sw=weighted: (
            _train(b, d, h, o, t, bs, X, Y, w if sw else None, orders, rates, l2=1e-3 if sw else 0))
    for backend, dtype, threads in itertools.product(backends, ("float32", "float64"), (1, 2)):
        yield (f"plateau {backend} {dtype} threads={threads}",
               lambda b=backend, d=dtype, t=threads: _plateau(b, d, t, X, Y))
        yield (f"diverged {backend} {dtype} threads={threads}",
               lambda b=backend, d=dtype, t=threads: _diverge(b, d, t, X, Y))


def _net(backend, dtype, hidden, threads, sizes=(12, 20, 4), output="softmax",
         loss="cross_entropy"):
    return MLP(sizes, hidden, output, loss, dtype=dtype, backend=backend, random_state=1,
               n_threads=threads)


def _optimizer(settings):
    """The optim.Optimizer of these settings ({"optimizer": name, momentum=..., ...})."""
    settings = dict(settings)
    return Optimizer(settings.pop("optimizer"), **settings)


def _train(backend, dtype, hidden, opt, threads, batch, X, Y, w, orders, rates, l2):
    net = _net(backend, dtype, hidden, threads, sizes=(12, 40, 4) if batch > 100 else (12, 20, 4))
    losses, event = net.train_epochs(X, Y, rates, batch_size=batch,
                                     optimizer=_optimizer(dict(opt, l2=l2)), sample_weight=w,
                                     orders=orders)
    state = net.optimizer_state
    return digest(net.theta, state.first, state.second, [state.t], losses) + " " + event


def _plateau(backend, dtype, threads, X, Y):
    net = _net(backend, dtype, "relu", threads)
    rule = Plateau(0.5, 1)
    losses, event = net.train_epochs(X, Y, [0.01] * 10, batch_size=64, optimizer="adam",
                                     plateau=rule)
    return digest(net.theta, losses, [rule.best, rule.count]) + " " + event


def _diverge(backend, dtype, threads, X, Y):
    net = _net(backend, dtype, "relu", threads, output="identity", loss="squared_error")
    losses, event = net.train_epochs(X * 1e3, Y, [10.0] * 4, batch_size=150,
                                     optimizer=_optimizer(dict(optimizer="sgd", momentum=0.9)))
    return digest(net.theta, net.optimizer_state.first, losses) + " " + event


def estimator_cases(backends):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16.0
    y = y[:600]
    configs = {
        "adam": dict(),
        "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05),
        "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", momentum=0.5),
        "lbfgs": dict(solver="lbfgs", max_iter=40),
        "early-stopping": dict(early_stopping=True),
        "tol-stop": dict(tol=0.05, n_iter_no_change=2),
    }
    for backend, dtype, threads, (name, params) in itertools.product(
            backends, ("float32", "float64"), (1, 2), configs.items()):
        yield (f"classifier {backend} {dtype} threads={threads} {name}",
               lambda b=backend, d=dtype, t=threads, p=params: _classify(b, d, t, p, X, y))
    for backend in backends:
        yield (f"regressor {backend} float64 threads=2 adam",
               lambda b=backend: _regress(b, X, y))


def _classify(backend, dtype, threads, params, X, y):
    est = MLPClassifier(hidden_layer_sizes=(30,), max_iter=params.pop("max_iter", 30),
                        random_state=0, backend=backend, n_threads=threads, **params)
    est.fit(X.astype(dtype), y)
    return digest(*est.coefs_, *est.intercepts_, getattr(est, "loss_curve_", [])) + \
        f" n_iter={est.n_iter_}"


def _regress(backend, X, y):
    est = MLPRegressor(hidden_layer_sizes=(20,), max_iter=20, random_state=0, backend=backend,
                       n_threads=2).fit(X, y.astype(float))
    return digest(*est.coefs_, *est.intercepts_, est.loss_curve_) + f" n_iter={est.n_iter_}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=fastmlp.available_backends())
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    for name, run in itertools.chain(kernel_cases(args.backends), estimator_cases(args.backends)):
        try:
            result = run()
        except Exception as exc:  # noqa: BLE001 - a case that cannot run is reported, not fatal
            result = f"error: {type(exc).__name__}: {exc}"
        print(f"{name}: {result}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
