"""Where hand loops stop beating BLAS inside @njit, and δ Wᵀ for a narrow δ through BLAS on W
or on a transposed copy: the measurements behind _layout.SMALL_WORK and _layout.NARROW_OUT
(the second with one BLAS thread, as in a split minibatch).

    python -m bench.crossover    # µs per call, per shape and dtype
"""
import time

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

#: (rows, n_in, n_out) around the SMALL_WORK switch and at the workloads' shapes.
LAYER_SHAPES = [(1, 64, 32), (1, 32, 10), (32, 64, 128), (32, 128, 10), (128, 784, 256),
                (128, 256, 128), (128, 128, 10), (64, 64, 64), (16, 100, 100), (200, 64, 100),
                (200, 100, 10), (8, 256, 256), (32, 256, 256)]
#: (rows, n_in, n_out) of a narrow δ (an output layer).
NARROW_SHAPES = [(100, 100, 10), (200, 100, 10), (64, 128, 10), (100, 300, 16), (100, 100, 32)]


@njit(cache=True)
def loop_forward(A, W, out, reps):
    n, n_in = A.shape
    n_out = W.shape[1]
    for _ in range(reps):
        for i in range(n):
            row = out[i]
            row[:] = 0
            for k in range(n_in):
                a, w = A[i, k], W[k]
                for j in range(n_out):
                    row[j] += a * w[j]


@njit(cache=True)
def blas_forward(A, W, out, reps):
    for _ in range(reps):
        np.dot(A, W, out)


@njit(cache=True)
def loop_delta_in(D, W, out, reps):
    n = D.shape[0]
    n_in, n_out = W.shape
    for _ in range(reps):
        for i in range(n):
            d = D[i]
            for k in range(n_in):
                w = W[k]
                s = 0.0
                for j in range(n_out):
                    s += d[j] * w[j]
                out[i, k] = s


@njit(cache=True)
def blas_delta_in(D, W, out, reps):
    for _ in range(reps):
        np.dot(D, W.T, out)


@njit(cache=True)
def blas_delta_in_on_a_copy(D, W, out, reps):
    for _ in range(reps):
        np.dot(D, np.ascontiguousarray(W.T), out)  # gemm('N', 'N') on Wᵀ, copy included


@njit(cache=True)
def loop_grad_w(A, D, G, reps):
    n, n_in = A.shape
    n_out = D.shape[1]
    for _ in range(reps):
        G[:] = 0
        for i in range(n):
            d = D[i]
            for k in range(n_in):
                a, g = A[i, k], G[k]
                for j in range(n_out):
                    g[j] += a * d[j]


@njit(cache=True)
def blas_grad_w(A, D, G, reps):
    for _ in range(reps):
        np.dot(A.T, D, G)


def timed(kernel, *args):
    """µs per call: the median of 5 timings of enough repetitions for 20 ms."""
    reps = 1
    while True:
        start = time.perf_counter()
        kernel(*args, reps)
        if time.perf_counter() - start > 0.02:
            break
        reps *= 4
    times = []
    for _ in range(5):
        start = time.perf_counter()
        kernel(*args, reps)
        times.append(time.perf_counter() - start)
    return np.median(times) / reps * 1e6


def main():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for n, n_in, n_out in LAYER_SHAPES:
            A, W = rng.random((n, n_in)).astype(dtype), rng.random((n_in, n_out)).astype(dtype)
            D = rng.random((n, n_out)).astype(dtype)
            out, delta_in = np.empty((n, n_out), dtype), np.empty((n, n_in), dtype)
            grad_w = np.empty((n_in, n_out), dtype)
            print(f"{dtype.__name__:8} {n:4} {n_in:4} {n_out:4} work={n * n_in * n_out:9} "
                  f"forward loop {timed(loop_forward, A, W, out):8.2f} "
                  f"blas {timed(blas_forward, A, W, out):8.2f} | "
                  f"δ_in loop {timed(loop_delta_in, D, W, delta_in):8.2f} "
                  f"blas {timed(blas_delta_in, D, W, delta_in):8.2f} | "
                  f"gW loop {timed(loop_grad_w, A, D, grad_w):8.2f} "
                  f"blas {timed(blas_grad_w, A, D, grad_w):8.2f}")
    with threadpool_limits(1):
        for dtype in (np.float32, np.float64):
            for n, n_in, n_out in NARROW_SHAPES:
                D, W = rng.random((n, n_out)).astype(dtype), rng.random((n_in, n_out)).astype(dtype)
                out = np.empty((n, n_in), dtype)
                print(f"{dtype.__name__:8} δ {n}x{n_out}, W {n_in}x{n_out}: gemm on W "
                      f"{timed(blas_delta_in, D, W, out):7.2f} us, on a copy of Wᵀ "
                      f"{timed(blas_delta_in_on_a_copy, D, W, out):7.2f} us")


if __name__ == "__main__":
    main()
