"""Two checkouts side by side: `python -m bench.checkouts OLD NEW [--rounds 4]`.

A refactoring must leave the speed as it was. Each round runs one child process per
checkout (OLD then NEW, its own build and imports: `python setup.py build_ext --inplace` in
each first), alternating, so a neighbour's load falls on both: `fastmlp bench`'s digits fit
(scikit-learn's defaults, adam; the median of 3 fits after a warm-up) per compiled backend
and dtype, and the median of 2000 `partial_fit` calls on 1 and 32 rows (float32). Prints
the medians over the rounds and NEW/OLD.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import json, time, warnings
import numpy as np
warnings.simplefilter("ignore")
from fastmlp import MLPClassifier
from fastmlp.comparison import digits
X_train, _, y_train, _ = digits()
out = {}
for backend in ("cython", "numba"):
    for dtype in ("float32", "float64"):
        X = X_train.astype(dtype)
        MLPClassifier(backend=backend, random_state=0, max_iter=1).fit(X[:256], y_train[:256])
        times = []
        for _ in range(3):
            est = MLPClassifier(backend=backend, random_state=0)
            start = time.perf_counter()
            est.fit(X, y_train)
            times.append(time.perf_counter() - start)
        out[f"digits fit s, {backend} {dtype}"] = float(np.median(times))
    X = X_train.astype("float32")
    est = MLPClassifier(backend=backend, random_state=0).partial_fit(
        X[:32], y_train[:32], classes=np.arange(10))
    for rows in (1, 32):
        xb, yb = X[:rows], y_train[:rows]
        for _ in range(200):
            est.partial_fit(xb, yb)
        times = []
        for _ in range(2000):
            start = time.perf_counter()
            est.partial_fit(xb, yb)
            times.append(time.perf_counter() - start)
        out[f"partial_fit us, {backend} {rows} row(s)"] = 1e6 * float(np.median(times))
print(json.dumps(out))
'''


def measure(path):
    """One child's figures for the checkout at `path`."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          cwd=path, env=env)
    if proc.returncode:
        raise RuntimeError(f"{path}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    runs = {"old": [], "new": []}
    for _ in range(args.rounds):
        runs["old"].append(measure(args.old))
        runs["new"].append(measure(args.new))
    print(f"{'measure':36} {'old':>9} {'new':>9} {'new/old':>8}")
    for key in runs["old"][0]:
        old = statistics.median(run[key] for run in runs["old"])
        new = statistics.median(run[key] for run in runs["new"])
        print(f"{key:36} {old:9.4g} {new:9.4g} {new / old:8.3f}")
    print(f"medians of {args.rounds} rounds, each a child per checkout, alternating: "
          f"old = {args.old}, new = {args.new}")


if __name__ == "__main__":
    main()
