"""Start-up cost apart from run time: the first fit in a fresh process.

For each backend and dtype, a fresh Python process imports fastmlp and fits MLPClassifier on
digits for 10 epochs; numba is run twice against one empty cache directory (cold: compiles
everything; cached: loads the first run's machine code). cython is compiled at install time.

Run: python -m bench.cold_start
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

PROBE = r"""
import time, warnings
t0 = time.perf_counter()
import numpy as np
import fastmlp
from sklearn.datasets import load_digits
t1 = time.perf_counter()
X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.{dtype})
warnings.simplefilter("ignore")
t2 = time.perf_counter()
fastmlp.MLPClassifier(max_iter=10, random_state=0, backend="{backend}").fit(X, y)
t3 = time.perf_counter()
fastmlp.MLPClassifier(max_iter=10, random_state=0, backend="{backend}").fit(X, y)
t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "first_fit": t3 - t2, "second_fit": t4 - t3}}))
"""


def measure(backend, dtype, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    code = "import json\n" + PROBE.format(backend=backend, dtype=dtype)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["numba", "cython"])
    args = parser.parse_args(argv)
    print(f"{'backend':8} {'dtype':8} {'start':7} {'import s':>9} {'1st fit s':>10} "
          f"{'2nd fit s':>10}")
    for backend in args.backends:
        for dtype in ("float32", "float64"):
            with tempfile.TemporaryDirectory() as cache:
                # NUMBA_CACHE_DIR points Numba at a fresh directory, so "cold" really
                # compiles; the second process reuses what the first one wrote.
                labels = ("cold", "cached") if backend == "numba" else ("AOT",)
                for label in labels:
                    r = measure(backend, dtype, cache)
                    print(f"{backend:8} {dtype:8} {label:7} {r['import']:9.3f} "
                          f"{r['first_fit']:10.3f} {r['second_fit']:10.3f}")


if __name__ == "__main__":
    main()
