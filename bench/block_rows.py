"""When a GEMM's output should be made in row blocks: the measurement behind
_layout.BLOCK_DEPTHS.

A forward layer is out = relu(A @ W + b). Made in row blocks, each block's epilogue (bias and
ReLU) finds its rows in L2, but each block's GEMM packs all of W (n_in × n_out) again. This
times, through SciPy's BLAS (the one the compiled kernels call), the whole GEMM then one
epilogue pass against the same work in blocks of 256 rows and of BLOCK_DEPTHS · n_in rows,
for shapes whose output is past BLOCK_BYTES. Medians of interleaved rounds, ms per layer.

    python -m bench.block_rows [--rounds 7]
"""
import argparse
import time

import numpy as np
from scipy.linalg import blas

from fastmlp.backends._layout import BLOCK_DEPTHS, MIN_BLOCK_ROWS

#: (rows, n_in, n_out): W4's layers at batch 512-2048, a narrow-in wide-out layer, MNIST-sized.
SHAPES = [(512, 1024, 2048), (1024, 1024, 2048), (2048, 1024, 2048), (2048, 2048, 2048),
          (8192, 64, 2048), (8192, 784, 256)]


def layer(A, W, b, out, block):
    """out = relu(A W + b), `block` rows at a time (C order: (A W)ᵀ = Wᵀ Aᵀ in Fortran's)."""
    gemm = blas.sgemm if A.dtype == np.float32 else blas.dgemm
    for r0 in range(0, A.shape[0], block):
        rows = out[r0:r0 + block]
        gemm(1.0, W.T, A[r0:r0 + block].T, c=rows.T, overwrite_c=1)
        np.add(rows, b, out=rows)
        np.maximum(rows, 0, out=rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.dtype}, ms per layer (one GEMM | {MIN_BLOCK_ROWS}-row blocks | "
          f"{BLOCK_DEPTHS}·n_in-row blocks)")
    for n, n_in, n_out in SHAPES:
        A = rng.standard_normal((n, n_in)).astype(args.dtype)
        W = rng.standard_normal((n_in, n_out)).astype(args.dtype)
        b = rng.standard_normal(n_out).astype(args.dtype)
        out = np.empty((n, n_out), args.dtype)
        blocks = {"one GEMM": n, "256 rows": MIN_BLOCK_ROWS,
                  "depth rows": max(MIN_BLOCK_ROWS, BLOCK_DEPTHS * n_in)}
        times = {name: [] for name in blocks}
        for _ in range(args.rounds):
            for name, block in blocks.items():
                start = time.perf_counter()
                layer(A, W, b, out, block)
                times[name].append(time.perf_counter() - start)
        ms = [1e3 * float(np.median(times[name])) for name in blocks]
        print(f"{n:6d} x {n_in:5d} x {n_out:5d}   " + "   ".join(f"{t:8.2f}" for t in ms))


if __name__ == "__main__":
    main()
