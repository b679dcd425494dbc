"""Where a digits epoch goes, thread by thread: the cython kernel's phase timers.

The timers are a build option (they cost nothing when off, the default):

    FASTMLP_PHASE_TIMERS=1 pip install -e . --no-build-isolation
    python bench/phases.py [--fits 3]
    pip install -e . --no-build-isolation     # back to the untimed build

Prints µs per epoch per phase and thread for scikit-learn's default digits fit (the
benchmark's): the row gather, the forward and backward passes split into their GEMMs and
the rest (bias, activations, softmax, loss, δ epilogues), the waits at the two barriers of
each minibatch, the update, and the whole epoch; then Python's share of the fit (fit time
minus the kernel's epochs). Medians over --fits fits.
"""
import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from fastmlp import MLPClassifier, _build_info
from fastmlp.backends import _cython_kernels
from fastmlp.benchmarking import digits_problem

ROWS = ("gather", "forward_backward", "gemm", "epilogues", "wait_gradients", "update",
        "wait_update", "epoch")


def measure(dtype, fits, threads=2):
    X, _, y, _ = digits_problem(dtype)
    make = lambda: MLPClassifier(random_state=0, backend="cython", n_threads=threads)  # noqa: E731
    make().fit(X, y)  # warm up: threads, caches
    per_fit, fit_seconds = [], []
    for _ in range(fits):
        _cython_kernels.phase_times(threads)  # restart the sums
        start = time.perf_counter()
        est = make().fit(X, y)
        fit_seconds.append(time.perf_counter() - start)
        totals = np.array(_cython_kernels.phase_times(threads)) / est.n_iter_ * 1e6
        per_fit.append((totals, fit_seconds[-1] / est.n_iter_ * 1e6))
    phases = dict(zip(_cython_kernels.PHASES, np.median([t for t, _ in per_fit], axis=0).T))
    phases["epilogues"] = phases["forward_backward"] - phases["gemm"]
    return phases, float(np.median([f for _, f in per_fit]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=3)
    args = parser.parse_args()
    if not _build_info.phase_timers_enabled():
        raise SystemExit("built without phase timers: FASTMLP_PHASE_TIMERS=1 pip install -e . "
                         "--no-build-isolation (see this file's docstring)")
    warnings.simplefilter("ignore", ConvergenceWarning)
    for dtype in (np.float32, np.float64):
        phases, fit_us = measure(dtype, args.fits)
        print(f"digits fit, {np.dtype(dtype).name}: µs per epoch (thread 0 / thread 1)")
        for row in ROWS:
            values = " / ".join(f"{v:6.1f}" for v in phases[row])
            print(f"  {row:17} {values}")
        print(f"  whole fit ÷ epochs {fit_us:6.1f}  (Python and the per-fit work: "
              f"{fit_us - phases['epoch'][0]:.1f})")


if __name__ == "__main__":
    main()
