"""Prediction latency: fastmlp beside scikit-learn, onnxruntime, the bare NumPy forward pass,
and PyTorch and JAX where installed, the same weights in every contender.

A classifier is fitted by scikit-learn on a synthetic problem of each shape (digits-sized
64-100-10, MNIST-shaped 784-256-128-10) and its weights are assigned to fastmlp's
estimators (one per backend) and copied into the other contenders. Each batch size (1, 32
and 100 000 rows) is timed call by call, the contenders interleaved round after round, on
the machine as it is and beside one process that keeps a core busy; the medians and the
99th percentiles are reported, and every contender's probabilities are checked against
scikit-learn's. fastmlp's 100 000-row calls are also timed with n_threads=1, the figure a
busy machine's default should stay near.

`python -m bench --latency [--quick]` prints the table and writes its section of the report.
"""
import contextlib
import time
import warnings

import numpy as np

from .harness import COOLDOWN

PROBLEMS = {"digits": (64, 100, 10), "mnist-shaped": (784, 256, 128, 10)}
ROWS = (1, 32, 100_000)
CONDITIONS = ("idle", "busy")


def _weights(sizes, dtype, seed=0):
    """scikit-learn's MLPClassifier fitted briefly on a learnable synthetic problem."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(seed)
    X = rng.random((2000, sizes[0])).astype(dtype)
    y = np.argmax(X @ rng.normal(size=(sizes[0], sizes[-1])), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(hidden_layer_sizes=sizes[1:-1], max_iter=3,
                             random_state=0).fit(X, y)


def _numpy_forward(model, dtype):
    """The forward pass with NumPy alone, into preallocated buffers (per batch size)."""
    Ws = [W.astype(dtype) for W in model.coefs_]
    bs = [b.astype(dtype) for b in model.intercepts_]
    buffers = {}

    def run(X):
        n = X.shape[0]
        if n not in buffers:
            buffers[n] = [np.empty((n, W.shape[1]), dtype) for W in Ws]
        A = X
        for W, b, out in zip(Ws, bs, buffers[n]):
            np.matmul(A, W, out=out)
            out += b
            if out is not buffers[n][-1]:
                np.maximum(out, 0, out=out)
            A = out
        A -= A.max(axis=1, keepdims=True)
        np.exp(A, out=A)
        A /= A.sum(axis=1, keepdims=True)
        return A
    return run


def _onnxruntime(estimator, X):
    try:
        import onnxruntime as ort

        from fastmlp.onnx import to_onnx
    except ImportError:
        return None
    graph = to_onnx(estimator, X[:1], options={id(estimator): {"zipmap": False}})
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda X: session.run(None, {name: X})[1]


def _torch(model, dtype):
    try:
        import torch
    except ImportError:
        return None
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    layers = []
    for W, b in zip(model.coefs_, model.intercepts_):
        linear = torch.nn.Linear(*W.shape, dtype=tdtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.astype(dtype)))
            linear.bias.copy_(torch.from_numpy(b.astype(dtype)))
        layers += [linear, torch.nn.ReLU()]
    net = torch.jit.freeze(torch.jit.script(torch.nn.Sequential(*layers[:-1]).eval()))

    def run(X):
        with torch.inference_mode():
            return torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    return run


def _jax(model, dtype):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    params = [(jnp.asarray(W.astype(dtype)), jnp.asarray(b.astype(dtype)))
              for W, b in zip(model.coefs_, model.intercepts_)]

    @jax.jit
    def forward(X):
        A = X
        for W, b in params[:-1]:
            A = jax.nn.relu(A @ W + b)
        W, b = params[-1]
        return jax.nn.softmax(A @ W + b, axis=1)

    return lambda X: np.asarray(forward(X))


def _given(estimator, sk, dtype):
    """An unfitted fastmlp estimator given scikit-learn's model: its classes and weights."""
    estimator.classes_ = sk.classes_
    estimator.coefs_ = [W.astype(dtype) for W in sk.coefs_]
    estimator.intercepts_ = [b.astype(dtype) for b in sk.intercepts_]
    estimator.predict_proba(np.zeros((1, sk.n_features_in_), dtype))  # builds its network
    return estimator


def contenders(sizes, dtype, X):
    """name -> a callable taking X and returning class probabilities (or labels, for the
    predict rows), every one with scikit-learn's weights."""
    import fastmlp

    sk = _weights(sizes, dtype)
    runs = {"sklearn predict_proba": sk.predict_proba, "sklearn predict": sk.predict}
    for backend in fastmlp.available_backends():
        if backend == "numpy":
            continue
        ours, one = (_given(fastmlp.MLPClassifier(hidden_layer_sizes=sizes[1:-1],
                                                  backend=backend, n_threads=n), sk, dtype)
                     for n in (None, 1))
        runs[f"fastmlp-{backend} predict_proba"] = ours.predict_proba
        runs[f"fastmlp-{backend} predict"] = ours.predict
        runs[f"fastmlp-{backend} predict_proba, n_threads=1"] = one.predict_proba
        if "onnxruntime" not in runs:
            onnx = _onnxruntime(ours, X)
            if onnx is not None:
                runs["onnxruntime"] = onnx
    runs["numpy forward"] = _numpy_forward(sk, dtype)
    for name, make in (("torch jit", _torch), ("jax jit", _jax)):
        run = make(sk, dtype)
        if run is not None:
            runs[name] = run
    return runs, sk


def _calls(rows):
    """Calls timed per contender and round: enough for a percentile at small batches."""
    return 2 if rows >= 10_000 else 200 if rows >= 32 else 500


def time_calls(runs, X, rounds, seed=0):
    """{name: [seconds of each call]}, the contenders interleaved round after round, in a new
    order each round (the one after a noisy neighbour pays for its caches)."""
    times = {name: [] for name in runs}
    for run in runs.values():  # warm-up: compile, caches, thread pools
        run(X)
        run(X)
    order = np.random.default_rng(seed)
    for _ in range(rounds):
        for name in order.permutation(list(runs)):
            run = runs[name]
            time.sleep(COOLDOWN)  # the last contender's BLAS threads stop spinning
            for _ in range(_calls(X.shape[0])):
                start = time.perf_counter()
                run(X)
                times[name].append(time.perf_counter() - start)
    return times


def _check(runs, sk, X):
    """Every contender's answer agrees with scikit-learn's (probabilities to 1e-4 in float32,
    labels where the top two probabilities are apart)."""
    expected = sk.predict_proba(X)
    apart = np.abs(np.diff(np.sort(expected, axis=1)[:, -2:], axis=1))[:, 0] > 1e-4
    for name, run in runs.items():
        got = np.asarray(run(X))
        if got.ndim == 1:
            assert (got[apart] == sk.classes_[np.argmax(expected, 1)][apart]).all(), name
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=name)


def run(problems=tuple(PROBLEMS), dtypes=(np.float32, np.float64), rows=ROWS, rounds=5,
        conditions=CONDITIONS, progress=None):
    """Rows {problem, dtype, rows, condition, contender, median_us, p99_us, calls}."""
    from .contention import Neighbour

    results = []
    for problem in problems:
        sizes = PROBLEMS[problem]
        for dtype in dtypes:
            data = np.random.default_rng(1).random((max(rows), sizes[0])).astype(dtype)
            runs, sk = contenders(sizes, dtype, data)
            _check(runs, sk, data[:1000])
            for condition in conditions:
                with Neighbour() if condition == "busy" else contextlib.nullcontext():
                    for n in rows:
                        times = time_calls(runs, data[:n], rounds)
                        for name, t in times.items():
                            t = np.array(t) * 1e6
                            results.append(dict(problem=problem, dtype=np.dtype(dtype).name,
                                                rows=n, condition=condition, contender=name,
                                                median_us=float(np.median(t)),
                                                p99_us=float(np.percentile(t, 99)),
                                                calls=len(t)))
                        if progress:
                            progress(problem, dtype, condition, n)
    return results


def text(results):
    """A markdown table per problem: each contender's median (p99) microseconds per call and
    its ratio to scikit-learn's same method (predict_proba, or predict)."""
    lines = []
    keys = dict.fromkeys((r["problem"], r["dtype"], r["rows"], r["condition"]) for r in results)
    lines += ["| problem | dtype | rows | machine | contender | median µs | p99 µs | "
              "× faster than sklearn |", "|---|---|---|---|---|---|---|---|"]
    for key in keys:
        group = [r for r in results if (r["problem"], r["dtype"], r["rows"], r["condition"])
                 == key]
        sk = {r["contender"].split()[-1]: r["median_us"] for r in group
              if r["contender"].startswith("sklearn")}
        for r in group:
            method = "predict" if r["contender"].endswith(" predict") else "predict_proba"
            ratio = sk[method] / r["median_us"]
            lines.append(f"| {r['problem']} | {r['dtype']} | {r['rows']} | {r['condition']} | "
                         f"{r['contender']} | {r['median_us']:.1f} | {r['p99_us']:.1f} | "
                         f"{ratio:.2f} |")
    return "\n".join(lines)
