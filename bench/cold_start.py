"""JIT compile cost, apart from run time: first train_epoch in a fresh process, with an
empty Numba cache (cold: compiles everything) and with the cache that run left (cached).

Run: python bench/cold_start.py [--backend numba]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

PROBE = r"""
import time
t0 = time.perf_counter()
import numpy as np
import fastmlp
t1 = time.perf_counter()
net = fastmlp.MLP([64, 32, 10], dtype=np.{dtype}, backend="{backend}", random_state=0)
X = np.random.default_rng(0).random((64, 64)).astype(np.{dtype})
Y = np.eye(10, dtype=np.{dtype})[np.arange(64) % 10]
t2 = time.perf_counter()
net.train_epoch(X, Y, batch_size=16)
t3 = time.perf_counter()
net.train_epoch(X, Y, batch_size=16)
t4 = time.perf_counter()
print('{{"import": %f, "first_epoch": %f, "second_epoch": %f}}' % (t1 - t0, t3 - t2, t4 - t3))
"""


def measure(backend, dtype, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", PROBE.format(backend=backend, dtype=dtype)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba")
    args = parser.parse_args(argv)
    print(f"{'dtype':8} {'start':7} {'import s':>9} {'1st epoch s':>12} {'2nd epoch s':>12}")
    for dtype in ("float32", "float64"):
        with tempfile.TemporaryDirectory() as cache:
            # An editable install keeps its cache beside the sources; point Numba at a fresh
            # directory so "cold" really compiles, then reuse it for "cached".
            for label in ("cold", "cached"):
                r = measure(args.backend, dtype, cache)
                print(f"{dtype:8} {label:7} {r['import']:9.3f} {r['first_epoch']:12.3f} "
                      f"{r['second_epoch']:12.4f}")


if __name__ == "__main__":
    main()
