"""What one small training call costs: MLP.train_epoch on a single row (W1's 64-32-10 net),
the price of online learning, per backend.

Timed back to back (warm caches) and after a pause (COOLDOWN, as `python -m bench` pauses
before each call): on a VM the first Python work after an idle spell runs several times
slower, so the paused figure is what a call between other work costs. The step itself is
about a microsecond; the rest is the call's checks, the thread and Ctrl-C set-up, and the
kernel's entry. Medians, µs per call.

    python -m bench.call_overhead [--calls 25]
"""
import argparse
import time

import numpy as np

from fastmlp import MLP, available_backends
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


if __name__ == "__main__":
    main()
