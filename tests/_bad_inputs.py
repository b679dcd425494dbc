"""The bad-input table: every public entry point, every way in which input can be wrong.

Run as a script (`python tests/_bad_inputs.py BACKEND...`) so that a crash in compiled code kills
only this process: it prints one JSON line per case and exits 0 only if every case raised the
expected exception with a message that says what is wrong.
"""
import json
import re
import sys
import warnings

import numpy as np

import fastmlp
from fastmlp import MLP, MLPClassifier, MLPRegressor


def cases(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4))
    y = rng.integers(0, 3, 20)
    Y = np.eye(3)[y]
    nan_X = X.copy()
    nan_X[3, 2] = np.nan
    inf_X = X.copy()
    inf_X[5, 1] = np.inf
    net = MLP([4, 5, 3], backend=backend, random_state=0)
    fitted = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, backend=backend).fit(X, y)
    kernels = fastmlp.get_backend(backend)
    A, W, b = X, rng.normal(size=(4, 3)), np.zeros(3)
    A3 = np.ascontiguousarray(X[:, :3])  # an output that is also the input
    E = (ValueError, TypeError)
    table = [
        # MLP construction
        ("MLP one layer", lambda: MLP([4], backend=backend), E, "layer_sizes"),
        ("MLP zero units", lambda: MLP([4, 0, 3], backend=backend), E, "layer_sizes"),
        ("MLP unknown activation", lambda: MLP([4, 3], "gelu", backend=backend), E, "gelu"),
        ("MLP CE on identity", lambda: MLP([4, 3], output_activation="identity",
                                           loss="cross_entropy", backend=backend), E, "(0, 1)"),
        ("MLP int dtype", lambda: MLP([4, 3], dtype=int, backend=backend), E, "float32"),
        ("MLP unknown backend", lambda: MLP([4, 3], backend="cuda"), E, "unknown backend"),
        ("MLP n_threads 0", lambda: MLP([4, 3], backend=backend, n_threads=0), E, "n_threads"),
        ("MLP leaky slope 2", lambda: MLP([4, 3], "leaky_relu", leaky_slope=2,
                                          backend=backend), E, "leaky_slope"),
        # MLP methods
        ("forward NaN", lambda: net.forward(nan_X), E, "NaN"),
        ("forward inf", lambda: net.forward(inf_X), E, "infinity"),
        ("forward wrong width", lambda: net.forward(X[:, :3]), E, "3 columns, expected 4"),
        ("forward 1-d", lambda: net.forward(X[0]), E, "2D array"),
        ("forward empty", lambda: net.forward(X[:0]), E, "0 sample"),
        ("forward strings", lambda: net.forward(np.array([["a", "b", "c", "d"]])), E,
         "convert|string"),
        ("forward complex", lambda: net.forward(X + 1j), E, "[Cc]omplex"),
        ("forward objects", lambda: net.forward(np.array([[object()] * 4])), E, "float|object"),
        ("train Y rows", lambda: net.train_epoch(X, Y[:5]), E, "20 rows but Y has 5"),
        ("train Y NaN", lambda: net.train_epoch(X, Y * np.nan), E, "NaN"),
        ("train batch 0", lambda: net.train_epoch(X, Y, batch_size=0), E, "batch_size"),
        ("train bad order", lambda: net.train_epoch(X, Y, order=np.zeros(20, int)), E,
         "permutation"),
        ("train order out of range", lambda: net.train_epoch(X, Y, order=np.arange(20) + 5), E,
         "permutation"),
        ("train float order", lambda: net.train_epoch(X, Y, order=np.arange(20.0)), E,
         "integer"),
        ("train negative total weight", lambda: net.train_epoch(
            X, Y, sample_weight=-np.ones(20)), E, "positive sum"),
        ("train weights length", lambda: net.train_epoch(X, Y, sample_weight=np.ones(3)), E,
         "sample_weight"),
        ("train lr -1", lambda: net.train_epoch(X, Y, learning_rate=-1), E, "learning_rate"),
        ("train unknown optimizer", lambda: net.train_epoch(X, Y, optimizer="rmsprop"), E,
         "rmsprop"),
        ("gradients reduction", lambda: net.gradients(X, Y, reduction="max"), E, "reduction"),
        ("coefs_ wrong shape", lambda: setattr(net, "coefs_", [np.ones((2, 2))] * 2), E,
         "shape"),
        ("coefs_ NaN", lambda: setattr(net, "coefs_", [np.full((4, 5), np.nan),
                                                       np.ones((5, 3))]), E, "NaN"),
        # estimators
        ("fit NaN", lambda: MLPClassifier(backend=backend).fit(nan_X, y), E, "NaN"),
        ("fit inf", lambda: MLPRegressor(backend=backend).fit(inf_X, X[:, 0]), E, "infinity"),
        ("fit strings", lambda: MLPClassifier(backend=backend).fit(
            np.array([["a"] * 4] * 20), y), E, "convert|string"),
        ("fit complex", lambda: MLPClassifier(backend=backend).fit(X + 1j, y), E, "[Cc]omplex"),
        ("fit empty", lambda: MLPClassifier(backend=backend).fit(X[:0], y[:0]), E, "0 sample"),
        ("fit rows mismatch", lambda: MLPClassifier(backend=backend).fit(X, y[:7]), E,
         "inconsistent"),
        ("fit y NaN", lambda: MLPRegressor(backend=backend).fit(X, X[:, 0] * np.nan), E,
         "NaN"),
        ("fit hidden 0", lambda: MLPClassifier((0,), backend=backend).fit(X, y), E,
         "hidden_layer_sizes"),
        ("fit alpha -1", lambda: MLPClassifier(alpha=-1, backend=backend).fit(X, y), E, "alpha"),
        ("fit solver", lambda: MLPClassifier(solver="newton", backend=backend).fit(X, y), E,
         "solver"),
        ("fit batch 0", lambda: MLPClassifier(batch_size=0, backend=backend).fit(X, y), E,
         "batch_size"),
        ("fit momentum 2", lambda: MLPClassifier(momentum=2, backend=backend).fit(X, y), E,
         "momentum"),
        ("fit negative total weight", lambda: MLPClassifier(backend=backend).fit(
            X, y, sample_weight=-np.ones(20)), E, "sums to zero or less"),
        ("fit poisson negative y", lambda: MLPRegressor(loss="poisson", backend=backend).fit(
            X, np.arange(20) - 5.0), E, "valid range of the loss 'HalfPoissonLoss'"),
        ("fit loss gamma", lambda: MLPRegressor(loss="gamma", backend=backend).fit(X, y), E,
         "The 'loss' parameter of MLPRegressor must be a str among"),
        ("predict width", lambda: fitted.predict(X[:, :2]), E, "features"),
        ("predict NaN", lambda: fitted.predict(nan_X), E, "NaN"),
        ("partial_fit new class", lambda: MLPClassifier(backend=backend).partial_fit(
            X, y, classes=[0, 1]), E, "classes"),
        # kernels, straight
        ("kernel NaN input", lambda: kernels.forward_layer(nan_X, W, b, "relu",
                                                           np.empty((20, 3))),
         E, r"A_in contains nan at position \(3, 2\)"),
        ("kernel inf weight", lambda: kernels.forward_layer(A, np.where(W > 0, np.inf, W), b,
                                                            "relu", np.empty((20, 3))),
         E, "W contains inf"),
        ("kernel wrong out", lambda: kernels.forward_layer(A, W, b, "relu", np.empty((3, 3))),
         E, "out has shape"),
        ("kernel int arrays", lambda: kernels.forward_layer(A.astype(int), W.astype(int),
                                                            b.astype(int), "relu",
                                                            np.empty((20, 3), int)),
         E, "float32 or float64"),
        ("kernel out is A_in", lambda: kernels.forward_layer(A3, W[:3], b, "relu", A3), E,
         "out shares memory with A_in"),
        ("kernel NaN delta", lambda: kernels.backward_layer(A, np.full((20, 3), np.nan), W,
                                                            np.empty((4, 3)), np.empty(3)),
         E, "delta contains nan"),
    ]
    return table


def run(backend):
    failures = 0
    for name, call, errors, pattern in cases(backend):
        name = f"{backend}: {name}"
        print(json.dumps({"case": name}), flush=True)  # a crash's culprit is the last printed
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call()
        except errors as exc:
            ok = re.search(pattern, str(exc)) is not None
            outcome = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # the wrong kind of error
            ok, outcome = False, f"unexpected {type(exc).__name__}: {exc}"
        else:
            ok, outcome = False, "no error"
        failures += not ok
        print(json.dumps({"case": name, "ok": ok, "outcome": outcome[:300]}), flush=True)
    return failures


if __name__ == "__main__":
    sys.exit(1 if sum(run(backend) for backend in sys.argv[1:]) else 0)
