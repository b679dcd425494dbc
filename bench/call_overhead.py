"""What one small training call costs: MLP.train_epoch on a single row (W1's 64-32-10 net),
and the estimator's partial_fit on 1 and 32 rows of digits beside scikit-learn's — the price
of online learning, per backend.

Timed back to back (warm caches) and after a pause (COOLDOWN, as `python -m bench` pauses
before each call): on a VM the first Python work after an idle spell runs several times
slower, so the paused figure is what a call between other work costs. The step itself is
about a microsecond; the rest is the call's checks, the thread and Ctrl-C set-up, and the
kernel's entry. Medians, µs per call.

    python -m bench.call_overhead [--calls 25]
"""
import warnings

import argparse
import time

import numpy as np

from fastmlp import MLP, MLPClassifier, available_backends
from bench.harness import COOLDOWN


def call_times(backend, calls, pause):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64))
    y = np.eye(10)[[3]]
    net = MLP((64, 32, 10), backend=backend, random_state=0)
    net.train_epoch(x, y, batch_size=1)  # warm-up: compilation, first-touch allocations
    times = []
    for _ in range(calls):
        time.sleep(pause)
        start = time.perf_counter()
        net.train_epoch(x, y, batch_size=1)
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


def partial_fit_times(make, rows, calls, pause):
    """Median µs of est.partial_fit on `rows` digits rows (float32, a fitted 64-100-10 model:
    the fast path's case, a ready array of known classes)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    est = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X[:32], y[:32], classes=np.arange(10))
        times = []
        for i in range(calls):
            time.sleep(pause)
            xb, yb = X[i * rows % 1700:][:rows], y[i * rows % 1700:][:rows]
            start = time.perf_counter()
            est.partial_fit(xb, yb)
            times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=25)
    args = parser.parse_args()
    print(f"µs per 1-row train_epoch call (median of {args.calls})")
    print(f"{'backend':10s} {'back to back':>14s} {f'after {COOLDOWN} s':>14s}")
    for backend in available_backends():
        hot = call_times(backend, args.calls, 0.0)
        cold = call_times(backend, args.calls, COOLDOWN)
        print(f"{backend:10s} {hot:14.1f} {cold:14.1f}")
    from sklearn.neural_network import MLPClassifier as SkClassifier

    makers = {f"fastmlp {b}": (lambda b=b: MLPClassifier((100,), random_state=0, backend=b))
              for b in available_backends()}
    makers["scikit-learn"] = lambda: SkClassifier((100,), random_state=0)
    print(f"\nµs per partial_fit call, digits 64-100-10 float32 (median of {args.calls})")
    print(f"{'':16s} {'1 row':>10s} {'32 rows':>10s} {f'1 row, {COOLDOWN} s apart':>22s}")
    for name, make in makers.items():
        one, many = (partial_fit_times(make, rows, args.calls, 0.0) for rows in (1, 32))
        cold = partial_fit_times(make, 1, args.calls, COOLDOWN)
        print(f"{name:16s} {one:10.1f} {many:10.1f} {cold:22.1f}")


if __name__ == "__main__":
    main()
