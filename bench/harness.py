"""Side-by-side timing of training steps and fits: the machinery behind `python -m bench`.

A contender is a callable that runs `steps` SGD steps of one workload; its time per step is
the median over interleaved rounds (every contender once per round, so machine noise hits
all of them alike). Warm-up calls, which include JIT compilation, are outside the timing.
"""
import os
import time
from dataclasses import dataclass

import numpy as np

from fastmlp import MLP, available_backends

#: What the benchmarks run over: the installed backends (fastest first) and both dtypes.
BACKENDS = available_backends()
DTYPES = (np.float32, np.float64)


def dtype_id(dtype):
    return np.dtype(dtype).name


@dataclass(frozen=True)
class Workload:
    id: str
    layers: tuple
    batch: int
    steps: int  # steps per timed call: enough that one call takes milliseconds
    what: str


#: The workloads speed is judged by: ReLU hidden layers, softmax + cross-entropy, one SGD
#: step each.
WORKLOADS = {
    "W1": Workload("W1", (64, 32, 10), 1, 2000, "per-step overhead (online learning)"),
    "W2": Workload("W2", (64, 128, 10), 32, 400, "small nets (digits-sized)"),
    "W3": Workload("W3", (784, 256, 128, 10), 128, 20, "the classic MNIST MLP"),
    "W4": Workload("W4", (1024, 2048, 2048, 10), 512, 8, "GEMM-bound"),
}
QUICK_STEPS = {"W1": 500, "W2": 100, "W3": 5, "W4": 1}


def data(workload, dtype, seed=0):
    """Seeded inputs and one-hot targets for `steps` minibatches."""
    rng = np.random.default_rng(seed)
    n = workload.batch * workload.steps
    X = rng.standard_normal((n, workload.layers[0])).astype(dtype)
    Y = np.eye(workload.layers[-1], dtype=dtype)[rng.integers(0, workload.layers[-1], n)]
    return X, Y


def fastmlp_step(backend, workload, dtype, X, Y, n_threads=None):
    """Contender: MLP.train_epoch over the data (epoch time ÷ steps = time per step)."""
    net = MLP(workload.layers, "relu", "softmax", "cross_entropy", dtype=dtype, backend=backend,
              random_state=0, n_threads=n_threads)

    def run():
        return net.train_epoch(X, Y, batch_size=workload.batch, learning_rate=1e-3)

    run.net = net
    return run


def gemm_floor(workload, dtype, X, Y, rows=None):
    """Contender: only the GEMMs a step needs — A@W per layer, Aᵀδ per layer, δWᵀ per layer
    but the first — on preallocated buffers. No bias, activation, loss or update.

    rows (lo, hi): only those rows of every minibatch, a core's share of a split one."""
    rng = np.random.default_rng(1)
    sizes, b = workload.layers, workload.batch
    lo, hi = rows or (0, b)
    Ws = [rng.standard_normal((i, o)).astype(dtype) for i, o in zip(sizes[:-1], sizes[1:])]
    acts = [np.empty((hi - lo, n), dtype) for n in sizes]
    deltas = [rng.standard_normal((hi - lo, n)).astype(dtype) for n in sizes]
    grads = [np.empty_like(W) for W in Ws]

    def run():
        for s in range(workload.steps):
            acts[0] = X[s * b + lo:s * b + hi]
            for l, W in enumerate(Ws):
                np.dot(acts[l], W, out=acts[l + 1])
            for l in range(len(Ws) - 1, -1, -1):
                np.dot(acts[l].T, deltas[l + 1], out=grads[l])
                if l > 0:
                    np.dot(deltas[l + 1], Ws[l].T, out=deltas[l])

    return run


def scipy_blas_floor(workload, dtype, X, Y):
    """Contender: the same GEMMs as gemm_floor through SciPy's BLAS — the library numba's
    kernels call, and cython's unless it links NumPy's (_blas.py). The f2py
    wrappers are Fortran-ordered, so each product is taken transposed (C-ordered arrays are
    their own transposes in Fortran order) into the preallocated output: no copies."""
    from scipy.linalg import blas

    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    rng = np.random.default_rng(1)
    sizes, b = workload.layers, workload.batch
    Ws = [rng.standard_normal((i, o)).astype(dtype) for i, o in zip(sizes[:-1], sizes[1:])]
    acts = [np.empty((b, n), dtype) for n in sizes]
    deltas = [rng.standard_normal((b, n)).astype(dtype) for n in sizes]
    grads = [np.empty_like(W) for W in Ws]

    def run():
        for s in range(workload.steps):
            acts[0] = X[s * b:(s + 1) * b]
            for l, W in enumerate(Ws):  # (A W)ᵀ = Wᵀ Aᵀ
                gemm(1.0, W.T, acts[l].T, c=acts[l + 1].T, overwrite_c=1)
            for l in range(len(Ws) - 1, -1, -1):  # (Aᵀ δ)ᵀ = δᵀ A
                gemm(1.0, deltas[l + 1].T, acts[l].T, c=grads[l].T, trans_b=1, overwrite_c=1)
                if l > 0:  # (δ Wᵀ)ᵀ = W δᵀ
                    gemm(1.0, Ws[l].T, deltas[l + 1].T, c=deltas[l].T, trans_a=1,
                         overwrite_c=1)

    return run


def torch_step(workload, dtype, X, Y, n_threads=None):
    """Contender: PyTorch eager CPU, nn.Linear + autograd + optim.SGD. None if torch is absent."""
    try:
        import torch
    except ImportError:
        return None
    if n_threads:
        torch.set_num_threads(n_threads)
    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    layers = []
    for i, (n_in, n_out) in enumerate(zip(workload.layers[:-1], workload.layers[1:])):
        layers.append(torch.nn.Linear(n_in, n_out, dtype=tdtype))
        if i < len(workload.layers) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    b = workload.batch
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    labels = torch.from_numpy(Y.argmax(1))
    batches = [(Xt[s * b:(s + 1) * b], labels[s * b:(s + 1) * b]) for s in range(workload.steps)]

    def run():
        for xb, yb in batches:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()

    return run


def contenders(workload, dtype, backends=None, with_torch=True, n_threads=None, with_jax=True):
    """name -> callable running workload.steps steps, fastmlp backends first."""
    X, Y = data(workload, dtype)
    runs = {}
    for backend in backends or available_backends():
        runs[backend] = fastmlp_step(backend, workload, dtype, X, Y, n_threads)
    runs["gemm floor"] = gemm_floor(workload, dtype, X, Y)
    runs["scipy BLAS floor"] = scipy_blas_floor(workload, dtype, X, Y)
    if with_jax:
        from . import jax_peer

        step = jax_peer.step(workload, dtype, X, Y)
        if step is not None:
            runs["jax scan"] = step
    if with_torch:
        step = torch_step(workload, dtype, X, Y, n_threads)
        if step is not None:
            runs["torch eager"] = step
    return runs


#: Pause before each timed call. OpenBLAS worker threads spin for ~0.1 s after a call; NumPy
#: and SciPy each load their own OpenBLAS, so without a
#: pause one contender's spinning threads would steal the cores of the next one.
COOLDOWN = 0.15


def _child_main(queue, function, args):
    queue.put(function(*args))


def in_child(function, *args, what="the benchmark"):
    """function(*args) in a fresh child process (spawned: nothing inherited, as a user's own
    script), its result sent back; a child that dies (killed, out of memory) is an error."""
    import multiprocessing
    from queue import Empty

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_main, args=(queue, function, args))
    child.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except Empty:
            if not child.is_alive() and queue.empty():
                raise RuntimeError(f"{what}'s process ended with exit code "
                                   f"{child.exitcode} and no result") from None
    child.join()
    return result


def time_interleaved(runs, rounds=7, cooldown=COOLDOWN):
    """Median seconds per call of each callable, calling them in turn, round after round."""
    for run in runs.values():  # warm-up: JIT compilation and first-touch allocations
        run()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(cooldown)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def step_table(workload_ids=("W1", "W2", "W3", "W4"), dtypes=(np.float32, np.float64),
               rounds=7, quick=False, backends=None, with_torch=True, n_threads=None,
               progress=None):
    """Rows of {workload, dtype, contender, us_per_step}, timed side by side."""
    rows = []
    for wid in workload_ids:
        workload = WORKLOADS[wid]
        if quick:
            workload = Workload(wid, workload.layers, workload.batch, QUICK_STEPS[wid],
                                workload.what)
        for dtype in dtypes:
            runs = contenders(workload, dtype, backends, with_torch, n_threads)
            medians = time_interleaved(runs, rounds)
            for name, seconds in medians.items():
                rows.append(dict(workload=wid, dtype=np.dtype(dtype).name, contender=name,
                                 us_per_step=1e6 * seconds / workload.steps,
                                 compile_s=getattr(runs[name], "compile_seconds", None)))
            if progress:
                progress(wid, np.dtype(dtype).name)
    return rows


def forward_vs_gemm(shape=(128, 784, 256), dtypes=(np.float32, np.float64), rounds=15,
                    reps=50, backends=None):
    """Fused forward_layer (GEMM + bias + ReLU) of each backend against a bare np.dot."""
    from fastmlp.backends import get_backend

    n, n_in, n_out = shape
    rows = []
    for dtype in dtypes:
        rng = np.random.default_rng(0)
        A = rng.standard_normal((n, n_in)).astype(dtype)
        W = rng.standard_normal((n_in, n_out)).astype(dtype)
        b = rng.standard_normal(n_out).astype(dtype)
        out = np.empty((n, n_out), dtype)
        runs = {"bare GEMM": lambda: [np.dot(A, W, out=out) for _ in range(reps)]}
        for name in backends or available_backends():
            kernel = get_backend(name).unchecked.forward_layer

            def run(k=kernel):
                # as MLP calls it: inputs already validated, so no checks and no NaN/inf scan
                # (a public call adds one read of A, W and b: python -m bench.input_scan)
                for _ in range(reps):
                    k(A, W, b, "relu", out, 0.01)

            runs[name] = run
        for name, seconds in time_interleaved(runs, rounds).items():
            rows.append(dict(shape="x".join(map(str, shape)), dtype=np.dtype(dtype).name,
                             contender=name, us_per_call=1e6 * seconds / reps))
    return rows


#: The ratio columns of the step tables: (title, other contender, how).
#: "faster": other's time / this one's; "floor": this one's time / the other's.
RATIOS = (("× faster than numpy", "numpy", "faster"),
          ("÷ GEMM floor", "gemm floor", "floor"),
          ("÷ scipy BLAS floor", "scipy BLAS floor", "floor"),
          ("× faster than jax", "jax scan", "faster"),
          ("× faster than torch", "torch eager", "faster"))


def _ratios(group, us):
    out = []
    for _, other, how in RATIOS:
        if other not in group:
            out.append("-")
        else:
            out.append(f"{group[other] / us:.2f}" if how == "faster"
                       else f"{us / group[other]:.2f}")
    return out


def _groups(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["workload"], r["dtype"]), {})[r["contender"]] = r["us_per_step"]
    return groups


def ratio_table(rows):
    """Text table: per workload and dtype, each contender's µs/step and its ratios."""
    titles = ["vs numpy", "vs floor", "vs BLAS fl", "vs jax", "vs torch"]
    header = f"{'workload':8} {'dtype':8} {'contender':20} {'us/step':>10} " + \
        " ".join(f"{t:>10}" for t in titles)
    lines = [header, "-" * len(header)]
    for (wid, dtype), group in _groups(rows).items():
        for name, us in group.items():
            lines.append(f"{wid:8} {dtype:8} {name:20} {us:10.2f} " +
                         " ".join(f"{r:>10}" for r in _ratios(group, us)))
    compiles = [f"{r['workload']} {r['dtype']} {r['contender']} {r['compile_s']:.2f} s"
                for r in rows if r.get("compile_s") is not None]
    lines.append("vs numpy / jax / torch: how many times faster than that contender; vs "
                 "floor: time ÷ the bare GEMMs through NumPy's BLAS (vs BLAS fl: through "
                 "SciPy's); 1.00 = nothing added.")
    if compiles:
        lines.append("compile, apart from the timings: " + "; ".join(compiles))
    return "\n".join(lines)


def plot(rows, path):
    """Bar chart of µs per step by workload and contender (log scale); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys((r["workload"], r["dtype"]) for r in rows))
    names = list(dict.fromkeys(r["contender"] for r in rows))
    value = {(r["workload"], r["dtype"], r["contender"]): r["us_per_step"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cases)), 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [c + i * width for c in range(len(cases))]
        ax.bar(xs, [value.get((w, d, name), np.nan) for w, d in cases], width, label=name)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cases))])
    ax.set_xticklabels([f"{w}\n{d}" for w, d in cases])
    ax.set_yscale("log")
    ax.set_ylabel("µs per SGD step (median, lower is better)")
    ax.set_title("fastmlp training step, side by side")
    ax.set_xlabel("; ".join(f"{w.id}: {'-'.join(map(str, w.layers))}, batch {w.batch}"
                            for w in WORKLOADS.values() if any(c[0] == w.id for c in cases)),
                  fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- estimator fits ------------------------------------------------------------------------
def digits_problem(dtype, seed=0):
    """scikit-learn's digits scaled to [0, 1], a stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(dtype)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def mnist_shaped_problem(dtype, n_train=60000, n_test=10000, seed=0):
    """60k x 784 inputs in [0, 1], labels from a random 784-64-10 teacher (learnable)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n_train + n_test, 784), dtype=np.float64)
    W1, W2 = rng.normal(0, 1 / 28, (784, 64)), rng.normal(0, 1 / 8, (64, 10))
    y = np.argmax(np.tanh((X - 0.5) @ W1) @ W2, axis=1)
    X = X.astype(dtype)
    return X[:n_train], X[n_train:], y[:n_train], y[n_train:]


def fit_contenders(params, backends=None):
    """name -> estimator factory: fastmlp's MLPClassifier per backend, and scikit-learn's."""
    from sklearn.neural_network import MLPClassifier as SkClassifier

    from fastmlp import MLPClassifier

    runs = {f"fastmlp-{b}": (lambda b=b: MLPClassifier(backend=b, **params))
            for b in (backends or [n for n in available_backends() if n != "numpy"])}
    runs["sklearn"] = lambda: SkClassifier(**params)
    return runs


class _Compiled:
    """A jax_peer.DigitsFit in the estimators' shape for fit_table: fit(X, y) runs its
    compiled epochs (on the data it was compiled for; the warm-up's max_iter=1 and slice are
    ignored, as the compile already ran)."""

    def __init__(self, jax_fit):
        self.jax_fit = jax_fit

    def set_params(self, **params):
        return self

    def fit(self, X, y):
        self.jax_fit.fit()
        self.n_iter_ = self.jax_fit.epochs
        return self

    def score(self, X, y):
        return self.jax_fit.score(X, y)


class _FloorFit:
    """A fit's GEMM floor in the estimators' shape for fit_table: fit(X, y) runs only the
    GEMMs of every step of `epochs` epochs over X's minibatches in order, the last partial one
    included; it predicts nothing (score: NaN).

    floor: gemm_floor or scipy_blas_floor, with the BLAS's own threads. parts > 1: every
    minibatch's rows split over `parts` Python threads, one per core, each running its share
    through gemm_floor with one BLAS thread (NumPy's dot releases the GIL) — the floor of a
    kernel that splits a minibatch over the cores, as fastmlp's do. The threads never wait for
    each other between steps, as a real step must, but take turns at the GIL between GEMMs:
    close to a bound, not a strict one."""

    def __init__(self, floor, layers, batch, epochs, X, parts=1):
        self.epochs, self.parts = epochs, parts
        full, last = divmod(X.shape[0], batch)
        pieces = [(Workload("fit", layers, batch, full, "a fit's GEMMs"), X)] if full else []
        if last:
            pieces.append((Workload("fit", layers, last, 1, "its last minibatch"),
                           X[full * batch:]))
        self.epoch_runs = []  # per part: one epoch's GEMMs
        for p in range(parts):
            runs = [floor(w, X.dtype, Xw, None, rows=_share(w.batch, p, parts)) if parts > 1
                    else floor(w, X.dtype, Xw, None) for w, Xw in pieces]
            self.epoch_runs.append(runs)

    def set_params(self, **params):
        return self

    def _epochs(self, runs):
        for _ in range(self.epochs):
            for run in runs:
                run()

    def fit(self, X, y):
        if self.parts == 1:
            self._epochs(self.epoch_runs[0])
        else:
            import threading

            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                threads = [threading.Thread(target=self._epochs, args=(runs,))
                           for runs in self.epoch_runs]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        self.n_iter_ = self.epochs
        return self

    def score(self, X, y):
        return float("nan")


def _share(rows, part, parts):
    """Rows (lo, hi) of part `part` when `rows` are split as evenly as can be."""
    return rows * part // parts, rows * (part + 1) // parts


def fit_floors(layers, batch, epochs, X):
    """name -> a _FloorFit maker: the fit's GEMMs through NumPy's BLAS, through SciPy's, and
    split over the CPUs this process may use (FIT_FLOORS, in that order)."""
    from fastmlp._threads import cpu_count

    parts = cpu_count()
    return {"gemm floor": lambda: _FloorFit(gemm_floor, layers, batch, epochs, X),
            "scipy BLAS floor": lambda: _FloorFit(scipy_blas_floor, layers, batch, epochs, X),
            "gemm floor, split": lambda: _FloorFit(gemm_floor, layers, batch, epochs, X, parts)}


#: The contenders that are a floor, not a model, in the fit tables.
FIT_FLOORS = ("gemm floor", "scipy BLAS floor", "gemm floor, split")


def fit_table(problems=("digits",), dtypes=(np.float64, np.float32), rounds=3, backends=None,
              progress=None, with_jax=True):
    """Rows {problem, dtype, contender, fit_s, epochs, test_score}: fits side by side.

    digits: scikit-learn's default hyperparameters (100 hidden relu units, adam, 200
    epochs at most), and JAX's 200 adam epochs (jax_peer.DigitsFit, compile apart) when JAX
    is installed. mnist-shaped: 784-100-100-10, adam, batch 200, 2 epochs timed. Each
    beside its GEMM floors (fit_floors): the GEMMs of every step of those epochs, bare.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    rows = []
    for problem in problems:
        for dtype in dtypes:
            if problem == "digits":
                X_train, X_test, y_train, y_test = digits_problem(dtype)
                params = dict(random_state=0)
            else:
                X_train, X_test, y_train, y_test = mnist_shaped_problem(dtype)
                params = dict(hidden_layer_sizes=(100, 100), batch_size=200, max_iter=2,
                              random_state=0)
            runs = fit_contenders(params, backends)
            runs.update(fit_floors((64, 100, 10), 200, 200, X_train) if problem == "digits"
                        else fit_floors((784, 100, 100, 10), 200, 2, X_train))
            compile_s = {}
            if problem == "digits" and with_jax:
                from . import jax_peer

                if jax_peer.available():  # compiled here, once: apart from the timings
                    jax_fit = jax_peer.DigitsFit(X_train, y_train, dtype)
                    compile_s["jax scan"] = jax_fit.compile_seconds
                    runs["jax scan"] = lambda jax_fit=jax_fit: _Compiled(jax_fit)
            times = {name: [] for name in runs}
            fitted = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                for name, make in runs.items():  # warm-up: JIT compile or cache load
                    make().set_params(max_iter=1).fit(X_train[:250], y_train[:250])
                for _ in range(rounds):
                    for name, make in runs.items():
                        time.sleep(COOLDOWN)
                        est = make()
                        start = time.perf_counter()
                        est.fit(X_train, y_train)
                        times[name].append(time.perf_counter() - start)
                        fitted[name] = est
            for name, est in fitted.items():
                rows.append(dict(problem=problem, dtype=np.dtype(dtype).name, contender=name,
                                 fit_s=float(np.median(times[name])), epochs=int(est.n_iter_),
                                 test_score=float(est.score(X_test, y_test)),
                                 compile_s=compile_s.get(name)))
            if progress:
                progress(problem, np.dtype(dtype).name)
    return rows


def _fit_floor(rows):
    """(problem, dtype) -> the fastest GEMM floor's fit time, where one was measured."""
    floors = {}
    for r in rows:
        if r["contender"] in FIT_FLOORS:
            key = (r["problem"], r["dtype"])
            floors[key] = min(floors.get(key, np.inf), r["fit_s"])
    return floors


def fit_text(rows):
    lines = [f"{'problem':13} {'dtype':8} {'contender':20} {'fit s':>8} {'epochs':>6} "
             f"{'accuracy':>8} {'vs sklearn':>10} {'÷ floor':>8}"]
    lines.append("-" * len(lines[0]))
    sk = {(r["problem"], r["dtype"]): r["fit_s"] for r in rows if r["contender"] == "sklearn"}
    floors = _fit_floor(rows)
    for r in rows:
        key = (r["problem"], r["dtype"])
        ratio = sk[key] / r["fit_s"]
        floor = f"{r['fit_s'] / floors[key]:8.2f}" if key in floors else f"{'-':>8}"
        lines.append(f"{r['problem']:13} {r['dtype']:8} {r['contender']:20} {r['fit_s']:8.3f} "
                     f"{r['epochs']:6d} {r['test_score']:8.4f} {ratio:9.2f}x {floor}")
    lines.append("vs sklearn: how many times faster than scikit-learn's MLPClassifier.fit; "
                 "÷ floor: fit time ÷ the fastest bare-GEMM floor of the same steps")
    return "\n".join(lines)


def markdown_report(steps, forward, fits, machine, command):
    """docs/performance.md's main section, from one run's figures (tables for what was run)."""
    blas = ", ".join(f"{b['internal_api']} {b['version']} {b.get('architecture') or ''} "
                     f"kernels ({b['num_threads']} threads)" for b in machine["blas"])
    forced = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    if forced:  # a core type forced by the environment changes every BLAS figure
        blas += " — set in the environment: " + ", ".join(f"{k}={v}" for k, v in forced.items())
    gemms = (f"the cython kernels' GEMMs call {machine['cython_gemms']}, numba's SciPy's"
             if machine.get("cython_gemms") else "numba's kernels' GEMMs call SciPy's BLAS")
    out = ["# Performance", "",
           f"Written by `{command}`: rerun it to refresh this page (figures live here, not in "
           "the code's comments).", "",
           f"Measured on {machine['cpus']} cores ({machine['machine']}), "
           f"Python {machine['python']}, NumPy {machine['numpy']}, BLAS: {blas}; "
           f"OpenMP: {machine['openmp']}; {gemms}. Medians of interleaved rounds, one run: only ratios "
           "within one run compare, the machine's speed drifts between runs.", ""]
    if steps:
        out += ["Workloads: " + "; ".join(
            f"{w.id} {'-'.join(map(str, w.layers))} batch {w.batch} ({w.what})"
            for w in WORKLOADS.values() if any(r["workload"] == w.id for r in steps))
            + ". ReLU hidden layers, softmax + cross-entropy, plain SGD; `gemm floor` is only "
            "the GEMMs a step needs, called from Python through NumPy's BLAS, `scipy BLAS "
            "floor` the same GEMMs through SciPy's BLAS; "
            "`jax scan` is one `jax.jit` call over `jax.lax.scan` for all the steps.", ""]
    groups = _groups(steps)
    if groups:
        out += ["| workload | dtype | contender | µs/step | " +
                " | ".join(t for t, _, _ in RATIOS) + " |",
                "|---|---|---|---|" + "---|" * len(RATIOS)]
    for (wid, dtype), group in groups.items():
        for name, us in group.items():
            out.append(f"| {wid} | {dtype} | {name} | {us:.2f} | " +
                       " | ".join(_ratios(group, us)) + " |")
    compiles = [f"{r['workload']} {r['dtype']}: {r['compile_s']:.2f} s" for r in steps
                if r.get("compile_s") is not None]
    if compiles:
        out += ["", "JAX's ahead-of-time compile, apart from the timings: " +
                "; ".join(compiles) + "."]
    if steps and not any(r["contender"] == "jax scan" for r in steps):
        out += ["", "JAX is not installed: no jax rows (`pip install 'jax[cpu]'`)."]
    if forward:
        out += ["", "| forward_layer shape | dtype | contender | µs/call |", "|---|---|---|---|"]
        out += [f"| {r['shape']} | {r['dtype']} | {r['contender']} | {r['us_per_call']:.1f} |"
                for r in forward]
    if groups or forward:
        out.append("")
    out += ["| fit | dtype | contender | seconds | epochs | test accuracy | × faster than "
            "sklearn | × faster than jax | ÷ GEMM floor |", "|---|---|---|---|---|---|---|---|---|"]
    sk = {(r["problem"], r["dtype"]): r["fit_s"] for r in fits if r["contender"] == "sklearn"}
    jx = {(r["problem"], r["dtype"]): r["fit_s"] for r in fits if r["contender"] == "jax scan"}
    floors = _fit_floor(fits)

    def ratio(table, r, of):
        key = (r["problem"], r["dtype"])
        return f"{of(table[key], r['fit_s']):.2f}" if key in table else "-"
    out += [f"| {r['problem']} | {r['dtype']} | {r['contender']} | {r['fit_s']:.3f} | "
            f"{r['epochs']} | {r['test_score']:.4f} | {ratio(sk, r, lambda t, f: t / f)} | "
            f"{ratio(jx, r, lambda t, f: t / f)} | {ratio(floors, r, lambda t, f: f / t)} |"
            for r in fits]
    if floors:
        out += ["", "A fit's GEMM floor is the GEMMs of every step of its epochs (digits: "
                "200, MNIST-shaped: 2), bare: `gemm floor` through NumPy's BLAS, `scipy BLAS "
                "floor` through SciPy's, each with its BLAS's own threads; `gemm floor, split` "
                "splits every minibatch over the cores as fastmlp's kernels do, one BLAS "
                "thread per core, without the wait between steps that a real step needs (its "
                "threads do take turns at the GIL between GEMMs). ÷ GEMM floor divides by "
                "the fastest of the three."]
    compiles = [f"{r['problem']} {r['dtype']}: {r['compile_s']:.2f} s" for r in fits
                if r.get("compile_s") is not None]
    if compiles:
        out += ["", "JAX's fit compile, apart from the timings: " + "; ".join(compiles) + "."]
    return "\n".join(out) + "\n"
