"""Where an epoch goes, thread by thread: the cython kernel's phase timers.

The timers are a build option (they cost nothing when off, the default):

    FASTMLP_PHASE_TIMERS=1 pip install -e . --no-build-isolation
    python -m bench.phases [--problems digits mnist-shaped W3 ...] [--fits 3]
    pip install -e . --no-build-isolation     # back to the untimed build

For each problem — scikit-learn's default digits fit and the MNIST-shaped fit of
`python -m bench` (MLPClassifier, 2 threads), or a step workload W1-W4 (MLP.train_epoch, plain
SGD, as in the step tables) — prints µs per epoch per phase and thread: the row gather, the
forward and backward passes split into their GEMMs and the rest (bias, activations, softmax,
loss, δ epilogues), the waits at the two barriers of each minibatch, the update, and the
whole epoch; then the share outside the kernel (fit time minus the kernel's epochs: Python,
validation, the per-fit work). Medians over --fits fits. Compare the GEMM row with the bare
GEMM floor of `python -m bench` to see how far a workload is from it and what the rest costs.
"""
import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from fastmlp import MLPClassifier, _build_info
from fastmlp.backends import _cython_kernels
from bench.harness import (WORKLOADS, data, digits_problem, fastmlp_step,
                                  mnist_shaped_problem)

ROWS = ("gather", "forward_backward", "gemm", "epilogues", "wait_gradients", "update",
        "wait_update", "epoch")
FITS = {"digits": (digits_problem, dict(random_state=0)),
        "mnist-shaped": (mnist_shaped_problem, dict(hidden_layer_sizes=(100, 100),
                                                    batch_size=200, max_iter=2,
                                                    random_state=0))}


def _fit_runner(problem, dtype, threads):
    """A callable fitting the problem once; returns the epochs it ran."""
    make_data, params = FITS[problem]
    X, _, y, _ = make_data(dtype)

    def run():
        return MLPClassifier(backend="cython", n_threads=threads, **params).fit(X, y).n_iter_

    return run


def _step_runner(workload_id, dtype, threads):
    """A callable running one epoch of a step workload (its `steps` SGD steps)."""
    workload = WORKLOADS[workload_id]
    X, Y = data(workload, dtype)
    epoch = fastmlp_step("cython", workload, dtype, X, Y, n_threads=threads)

    def run():
        epoch()
        return 1

    return run


def measure(problem, dtype, fits, threads=2):
    """(phase -> µs per epoch per thread, whole call's µs per epoch), medians over fits."""
    runner = (_fit_runner if problem in FITS else _step_runner)(problem, dtype, threads)
    runner()  # warm up: threads, caches
    per_fit, call_us = [], []
    for _ in range(fits):
        _cython_kernels.phase_times(threads)  # restart the sums
        start = time.perf_counter()
        epochs = runner()
        seconds = time.perf_counter() - start
        per_fit.append(np.array(_cython_kernels.phase_times(threads)) / epochs * 1e6)
        call_us.append(seconds / epochs * 1e6)
    phases = dict(zip(_cython_kernels.PHASES, np.median(per_fit, axis=0).T))
    phases["epilogues"] = phases["forward_backward"] - phases["gemm"]
    return phases, float(np.median(call_us))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["digits", "mnist-shaped"],
                        choices=[*FITS, *WORKLOADS])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fits", type=int, default=3)
    args = parser.parse_args()
    if not _build_info.phase_timers_enabled():
        raise SystemExit("built without phase timers: FASTMLP_PHASE_TIMERS=1 pip install -e . "
                         "--no-build-isolation (see this file's docstring)")
    warnings.simplefilter("ignore", ConvergenceWarning)
    for problem in args.problems:
        for dtype in args.dtypes:
            phases, call_us = measure(problem, np.dtype(dtype), args.fits, args.threads)
            threads = " / ".join(f"thread {t}" for t in range(args.threads))
            print(f"{problem}, {dtype}: µs per epoch ({threads})")
            for row in ROWS:
                values = " / ".join(f"{v:9.1f}" for v in phases[row])
                share = 100 * phases[row][0] / phases["epoch"][0]
                print(f"  {row:17} {values}   ({share:5.1f}% of thread 0's epoch)")
            print(f"  whole call ÷ epochs {call_us:9.1f}  (outside the kernel: "
                  f"{call_us - phases['epoch'][0]:.1f})")


if __name__ == "__main__":
    main()
