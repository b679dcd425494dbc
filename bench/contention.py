"""The busy-machine benchmark: fits on an idle machine and beside a CPU-bound neighbour.

Most users' machines are not idle: a browser tab, a notebook kernel or a CI job holds a core.
A thread team that meets at a barrier after every minibatch then waits, at every step, for
the thread that shares a core with the neighbour. This benchmark runs the digits fit
(scikit-learn's defaults) and the MNIST-shaped fit (784-100-100-10, adam, batch 200) with
fastmlp's default threads, with n_threads=1, with default threads and the adaptation off
(`fastmlp.set_config(adaptive_threads=False)`: the thread count before it existed) and
scikit-learn, first with the machine as it is, then beside one process that spins on a core,
started and stopped here. Each fit runs in a fresh process (a warm-up fit first: numba's
cached kernels load, apart), the contenders interleaved round after round.

`python -m bench --contention` (or `python -m bench.contention`) prints the table.
"""
import contextlib
import json
import subprocess
import sys
import time
import warnings

import numpy as np

#: contender -> (library, backend, n_threads, adaptive_threads)
CONTENDERS = {
    "cython": ("fastmlp", "cython", None, True),
    "cython n_threads=1": ("fastmlp", "cython", 1, True),
    "cython, not adaptive": ("fastmlp", "cython", None, False),
    "numba": ("fastmlp", "numba", None, True),
    "numba n_threads=1": ("fastmlp", "numba", 1, True),
    "numba, not adaptive": ("fastmlp", "numba", None, False),
    "sklearn": ("sklearn", None, None, True),
}
PROBLEMS = ("digits", "mnist-shaped")
CONDITIONS = ("idle", "busy")


def _problem(problem, dtype, quick):
    from . import harness as B

    if problem == "digits":
        return B.digits_problem(dtype), dict(random_state=0)
    n_train = 6000 if quick else 60000
    return (B.mnist_shaped_problem(dtype, n_train=n_train, n_test=n_train // 6),
            dict(hidden_layer_sizes=(100, 100), batch_size=200, max_iter=2, random_state=0))


def _fit_in_child(contender, problem, dtype, quick):
    from sklearn.exceptions import ConvergenceWarning

    import fastmlp

    library, backend, n_threads, adaptive = CONTENDERS[contender]
    (X_train, X_test, y_train, y_test), params = _problem(problem, dtype, quick)
    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier

        make = lambda **kw: MLPClassifier(**{**params, **kw})
    else:
        make = lambda **kw: fastmlp.MLPClassifier(backend=backend, n_threads=n_threads,
                                                  **{**params, **kw})
    with warnings.catch_warnings(), fastmlp.config_context(adaptive_threads=adaptive):
        warnings.simplefilter("ignore", ConvergenceWarning)
        started = time.perf_counter()
        make(max_iter=1).fit(X_train[:400], y_train[:400])  # loads (or compiles) kernels
        warm_up = time.perf_counter() - started
        started = time.perf_counter()
        model = make().fit(X_train, y_train)
        seconds = time.perf_counter() - started
    return dict(contender=contender, problem=problem, dtype=np.dtype(dtype).name,
                seconds=seconds, warm_up_seconds=warm_up, epochs=int(model.n_iter_),
                test_score=float(model.score(X_test, y_test)))


class Neighbour:
    """A process that keeps one core busy (a Python busy loop) while the block runs."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # running, and seen so by the scheduler
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def run(contenders=tuple(CONTENDERS), problems=PROBLEMS, dtypes=(np.float64,), rounds=3,
        conditions=CONDITIONS, quick=False, progress=None):
    """Every contender, problem and dtype `rounds` times per condition, interleaved; rows keep
    each fit, `summary` the medians and the ratios."""
    from fastmlp import available_backends
    from .harness import in_child

    have = set(available_backends())
    contenders = [c for c in contenders if CONTENDERS[c][1] in have | {None}]
    fits = []
    for condition in conditions:
        with Neighbour() if condition == "busy" else contextlib.nullcontext():
            for _ in range(rounds):
                for problem in problems:
                    for dtype in dtypes:
                        for contender in contenders:
                            fit = in_child(_fit_in_child, contender, problem, dtype, quick,
                                           what=f"the {contender} {problem} fit")
                            fits.append(dict(fit, condition=condition))
                            if progress:
                                progress(fits[-1])
    return dict(rounds=rounds, quick=quick, fits=fits, summary=summary(fits))


def summary(fits):
    """Per (problem, dtype, condition, contender): the median fit and its ratios to the same
    backend's n_threads=1 fit and to scikit-learn's, and to the idle machine's."""
    def median(**key):
        times = [f["seconds"] for f in fits if all(f[k] == v for k, v in key.items())]
        return float(np.median(times)) if times else float("nan")

    rows = []
    for problem in dict.fromkeys(f["problem"] for f in fits):
        for dtype in dict.fromkeys(f["dtype"] for f in fits):
            for condition in dict.fromkeys(f["condition"] for f in fits):
                key = dict(problem=problem, dtype=dtype, condition=condition)
                for contender in dict.fromkeys(f["contender"] for f in fits):
                    seconds = median(contender=contender, **key)
                    backend = CONTENDERS[contender][1]
                    one = median(contender=f"{backend} n_threads=1", **key) if backend \
                        else float("nan")
                    rows.append(dict(
                        key, contender=contender, seconds=seconds,
                        vs_one_thread=seconds / one,
                        vs_sklearn=seconds / median(contender="sklearn", **key),
                        vs_idle=seconds / median(contender=contender, problem=problem,
                                                 dtype=dtype, condition="idle"),
                        test_score=float(np.median([f["test_score"] for f in fits
                                                    if f["contender"] == contender and all(
                                                        f[k] == v for k, v in key.items())]))))
    return rows


def text(result):
    lines = [f"Fits on an idle machine and beside one CPU-bound process (busy); medians of "
             f"{result['rounds']} fits, each in its own process. Ratios are time / time: "
             "below 1 is faster.", "",
             "| problem | dtype | machine | contender | fit s | / n_threads=1 | / sklearn | "
             "/ idle | test score |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["summary"]:
        lines.append(f"| {r['problem']} | {r['dtype']} | {r['condition']} | {r['contender']} | "
                     f"{r['seconds']:.3f} | {r['vs_one_thread']:.2f} | {r['vs_sklearn']:.3f} | "
                     f"{r['vs_idle']:.2f} | {r['test_score']:.4f} |")
    return "\n".join(lines).replace("| nan |", "| — |")


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 6 000-row MNIST-shaped fit")
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = run(rounds=args.rounds, quick=args.quick)
    print(text(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
