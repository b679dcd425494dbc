"""The measurements behind two size rules of the compiled backends, side by side in one run:

* _layout.CHUNK_MAX_WORK: split a minibatch across threads (per-thread gradient buffers) or
  leave the threading to BLAS — µs per step of train_epoch both ways, on a digits-sized step
  (200 x 64-100-10), the MNIST-shaped one (200 x 784-100-100-10) and W3 (128 x 784-256-128-10);
* _layout.MIN_BLOCK_ROWS: one GEMM over the whole minibatch or 128-row blocks, for
  forward_layer at 200 x 64 -> 100.

Run: python -m bench.data_parallel [--rounds 7]
"""
import argparse
import time

import numpy as np

from fastmlp import MLP, available_backends
from fastmlp.backends import _layout

CASES = {"digits-sized": ((64, 100, 10), 200), "mnist-shaped": ((784, 100, 100, 10), 200),
         "W3": ((784, 256, 128, 10), 128)}


def split_vs_blas(rounds):
    print(f"{'case':14} {'dtype':8} {'backend':7} {'split us/step':>14} {'BLAS us/step':>13} "
          f"{'split gain':>10}")
    for case, (layers, batch) in CASES.items():
        for dtype in (np.float32, np.float64):
            rng = np.random.default_rng(0)
            X = rng.random((batch * 20, layers[0])).astype(dtype)
            Y = np.eye(layers[-1], dtype=dtype)[rng.integers(0, layers[-1], len(X))]
            for backend in [b for b in available_backends() if b != "numpy"]:
                net = MLP(layers, dtype=dtype, backend=backend, random_state=0)
                times = {True: [], False: []}
                for _ in range(rounds):
                    for split in (True, False):  # interleaved by blocks of epochs
                        _layout.CHUNK_MAX_WORK = 10**12 if split else 0
                        # an idle pause first: OpenBLAS's and OpenMP's worker threads spin for
                        # a while after use and would steal the cores of the other mode
                        time.sleep(0.5)
                        net.train_epoch(X[:batch], Y[:batch], batch_size=batch)
                        start = time.perf_counter()
                        for _ in range(5):
                            net.train_epoch(X, Y, batch_size=batch, optimizer="adam")
                        times[split].append((time.perf_counter() - start) / 100 * 1e6)
                s, b = np.median(times[True]), np.median(times[False])
                print(f"{case:14} {np.dtype(dtype).name:8} {backend:7} {s:14.1f} {b:13.1f} "
                      f"{b / s:9.2f}x")


def block_rows(rounds):
    from numba import njit

    @njit
    def blocked(A, W, out, rows, reps):
        for _ in range(reps):
            for r0 in range(0, A.shape[0], rows):
                r1 = min(r0 + rows, A.shape[0])
                np.dot(A[r0:r1], W, out[r0:r1])

    rng = np.random.default_rng(0)
    A, W = rng.random((200, 64)), rng.random((64, 100))
    out = np.empty((200, 100))
    blocked(A, W, out, 200, 1)
    for rows in (200, 128):
        t = []
        for _ in range(rounds):
            start = time.perf_counter()
            blocked(A, W, out, rows, 200)
            t.append((time.perf_counter() - start) / 200 * 1e6)
        print(f"200x64->100 float64 GEMM in blocks of {rows} rows: {np.median(t):.1f} us")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    saved = _layout.CHUNK_MAX_WORK
    try:
        split_vs_blas(args.rounds)
    finally:
        _layout.CHUNK_MAX_WORK = saved
    block_rows(args.rounds)


if __name__ == "__main__":
    main()
