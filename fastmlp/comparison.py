"""fastmlp beside scikit-learn on this machine: `fastmlp bench`, and the comparison that ends
`fastmlp train`.

A fair comparison on a shared machine: other processes' load is measured and shown beside the
figures, and where they keep a CPU busy scikit-learn runs twice — with its BLAS threads as
they are and with one — and counts its faster run. (A BLAS thread team that shares a core
with another process waits at every GEMM, while fastmlp's default fit adapts its threads to
the load: comparing against scikit-learn's collapsed two-thread run would flatter fastmlp.)
The benchmark lab of a checkout (`python -m bench`) measures much more than this.
"""
import textwrap
import time
import warnings

import numpy as np

#: Other processes must keep at least this much of a CPU busy for the machine to count as busy.
BUSY_CPUS = 0.5


def others_busy(seconds=0.5):
    """How many CPUs' worth of time other processes took over the next `seconds`, of those
    this process may use (None where /proc/stat cannot tell)."""
    from . import _threads, _cpu_load

    before = _cpu_load.reading()
    if before is None:
        return None
    time.sleep(seconds)
    n_cpus = _threads.cpu_count()
    return n_cpus - _cpu_load.free_between(before, _cpu_load.reading(), n_cpus)


def load_note(busy):
    """The machine's load as a phrase for a report."""
    from ._threads import cpu_count

    if busy is None:
        return "the machine's load is unknown here"
    state = "busy" if busy >= BUSY_CPUS else "idle"
    return f"{state}: other processes kept {busy:.1f} of {cpu_count()} CPUs busy"


def sklearn_runs(busy):
    """{label: BLAS thread limit (None: as they are)} of the scikit-learn runs to time."""
    runs = {"sklearn": None}
    if busy is not None and busy >= BUSY_CPUS:
        runs["sklearn, 1 BLAS thread"] = 1
    return runs


def timed_fit(estimator, X, y, blas_threads=None):
    """Seconds of estimator.fit(X, y), under a BLAS thread limit if one is given."""
    from threadpoolctl import threadpool_limits

    if blas_threads is None:
        start = time.perf_counter()
        estimator.fit(X, y)
        return time.perf_counter() - start
    with threadpool_limits(blas_threads, user_api="blas"):
        start = time.perf_counter()
        estimator.fit(X, y)
        return time.perf_counter() - start


def _one_row_us(estimator, row, calls=200):
    """Median microseconds of predict_proba on one row."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        estimator.predict_proba(row)
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


def digits():
    """scikit-learn's digits scaled to [0, 1], split 75/25, stratified (seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def run(dtypes=("float32", "float64"), rounds=3, backend="auto", n_threads=None, busy=None,
        progress=None):
    """The digits fit with scikit-learn's default hyperparameters, by fastmlp's MLPClassifier
    and scikit-learn's, in interleaved rounds per dtype: rows {dtype, contender, fit_s
    (median), epochs, accuracy, predict_us (one row's predict_proba), compile_s (fastmlp's
    warm-up: a JIT compile or cache load)}. busy: others_busy()'s reading, which decides
    whether scikit-learn also runs with one BLAS thread."""
    from sklearn.neural_network import MLPClassifier as SkClassifier

    from . import MLPClassifier

    X_train, X_test, y_train, y_test = digits()
    makers = {"fastmlp": (lambda: MLPClassifier(backend=backend, n_threads=n_threads,
                                                random_state=0), None)}
    makers.update({label: (lambda: SkClassifier(random_state=0), limit)
                   for label, limit in sklearn_runs(busy).items()})
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warm-up's ConvergenceWarning
        for dtype in dtypes:
            rows += _fits(makers, X_train.astype(dtype), X_test.astype(dtype), y_train, y_test,
                          rounds)
            if progress:
                progress(dtype)
    return rows


def _fits(makers, X_train, X_test, y_train, y_test, rounds):
    """run()'s rows for one dtype: {label: (estimator factory, BLAS thread limit)}."""
    compile_s = {}
    for label, (make, limit) in makers.items():  # warm-up: compile, caches, thread pools
        compile_s[label] = timed_fit(make().set_params(max_iter=1), X_train[:256],
                                     y_train[:256], limit)
    times = {label: [] for label in makers}
    fitted = {}
    for _ in range(rounds):
        for label, (make, limit) in makers.items():
            fitted[label] = make()
            times[label].append(timed_fit(fitted[label], X_train, y_train, limit))
    return [dict(dtype=X_train.dtype.name, contender=label,
                 backend=getattr(model, "backend_", None), fit_s=float(np.median(times[label])),
                 epochs=int(model.n_iter_), accuracy=float(model.score(X_test, y_test)),
                 predict_us=_one_row_us(model, X_test[:1]),
                 compile_s=compile_s[label] if label == "fastmlp" else None)
            for label, model in fitted.items()]


def text(rows, busy, rounds):
    """The table `fastmlp bench` prints, with the load and what the ratio compares."""
    lines = [f"{'dtype':8} {'contender':24} {'fit s':>7} {'epochs':>6} {'accuracy':>8} "
             f"{'x faster':>8} {'predict 1 row':>14}"]
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        group = [r for r in rows if r["dtype"] == dtype]
        sklearn = min(r["fit_s"] for r in group if r["contender"].startswith("sklearn"))
        for r in group:
            name = r["contender"] + (f" [{r['backend']}]" if r["backend"] else "")
            lines.append(f"{dtype:8} {name:24} {r['fit_s']:7.3f} {r['epochs']:6d} "
                         f"{r['accuracy']:8.4f} {sklearn / r['fit_s']:7.2f}x "
                         f"{r['predict_us']:11.0f} us")
    warm = [f"{r['dtype']} {r['compile_s']:.2f} s" for r in rows if r["compile_s"] is not None]
    notes = (f"digits (1347 train / 450 test rows, 64-100-10, adam, scikit-learn's defaults); "
             f"fit s: the median of {rounds} interleaved rounds; x faster: scikit-learn's "
             f"faster run's time / this one's; predict 1 row: the median predict_proba call. "
             f"fastmlp's warm-up fit, apart (a JIT compile or a cache load): "
             f"{', '.join(warm)}. Machine: {load_note(busy)}.")
    return "\n".join(lines + [""] + textwrap.wrap(notes, 88))
