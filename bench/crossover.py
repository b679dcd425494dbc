"""Where hand loops stop beating BLAS inside @njit: the measurement behind SMALL_WORK; and
δ Wᵀ for a narrow δ through BLAS on W vs on a transposed copy: the one behind NARROW_OUT
(fastmlp/backends/_cython_kernels.pyx), one BLAS thread as in a split minibatch.

Run: python bench/crossover.py  (prints µs per call, per shape and dtype)
"""
import numpy as np, time
from numba import njit
@njit(cache=True)
def loop_fwd(A, W, out, reps):
    n, n_in = A.shape; n_out = W.shape[1]
    for _ in range(reps):
        for i in range(n):
            row = out[i]
            row[:] = 0
            for k in range(n_in):
                a = A[i, k]; w = W[k]
                for j in range(n_out):
                    row[j] += a * w[j]
@njit(cache=True)
def blas_fwd(A, W, out, reps):
    for _ in range(reps):
        np.dot(A, W, out)
@njit(cache=True)
def loop_bwd_in(D, W, out, reps):
    n, n_out = D.shape; n_in = W.shape[0]
    for _ in range(reps):
        for i in range(n):
            d = D[i]
            for k in range(n_in):
                w = W[k]; s = 0.0
                for j in range(n_out):
                    s += d[j]*w[j]
                out[i,k] = s
@njit(cache=True)
def blas_bwd_in(D, W, out, reps):
    for _ in range(reps):
        np.dot(D, W.T, out)
@njit(cache=True)
def loop_gw(A, D, G, reps):
    n, n_in = A.shape; n_out = D.shape[1]
    for _ in range(reps):
        G[:] = 0
        for i in range(n):
            d = D[i]
            for k in range(n_in):
                a = A[i,k]; g = G[k]
                for j in range(n_out):
                    g[j] += a*d[j]
@njit(cache=True)
def blas_gw(A, D, G, reps):
    for _ in range(reps):
        np.dot(A.T, D, G)
@njit(cache=True)
def blas_bwd_in_transposed_copy(D, W, out, reps):
    for _ in range(reps):
        np.dot(D, np.ascontiguousarray(W.T), out)  # gemm('N', 'N') on Wᵀ, copy included
def timed(f, *args):
    reps = 1
    while True:
        s = time.perf_counter(); f(*args, reps); e = time.perf_counter()-s
        if e > 0.02: break
        reps *= 4
    ts=[]
    for _ in range(5):
        s=time.perf_counter(); f(*args, reps); ts.append(time.perf_counter()-s)
    return np.median(ts)/reps*1e6
if __name__ == "__main__":
 for dtype in (np.float32, np.float64):
  for (n, k, m) in [(1,64,32),(1,32,10),(32,64,128),(32,128,10),(128,784,256),(128,256,128),(128,128,10),(64,64,64),(16,100,100),(200,64,100),(200,100,10),(8,256,256),(32,256,256)]:
    A = np.random.rand(n,k).astype(dtype); W = np.random.rand(k,m).astype(dtype); out = np.empty((n,m),dtype)
    D = np.random.rand(n,m).astype(dtype); O = np.empty((n,k),dtype); G = np.empty((k,m),dtype)
    print(f"{dtype.__name__:8} {n:4} {k:4} {m:4} work={n*k*m:9} fwd loop {timed(loop_fwd,A,W,out):8.2f} blas {timed(blas_fwd,A,W,out):8.2f} | din loop {timed(loop_bwd_in,D,W,O):8.2f} blas {timed(blas_bwd_in,D,W,O):8.2f} | gW loop {timed(loop_gw,A,D,G):8.2f} blas {timed(blas_gw,A,D,G):8.2f}")

 from threadpoolctl import threadpool_limits
 with threadpool_limits(1):
  for dtype in (np.float32, np.float64):
   for (n, k, m) in [(100,100,10),(200,100,10),(64,128,10),(100,300,16),(100,100,32)]:
    D = np.random.rand(n,m).astype(dtype); W = np.random.rand(k,m).astype(dtype); O = np.empty((n,k),dtype)
    print(f"{dtype.__name__:8} delta {n}x{m} W {k}x{m}: gemm on W {timed(blas_bwd_in,D,W,O):7.2f} us, on a copy of W.T {timed(blas_bwd_in_transposed_copy,D,W,O):7.2f} us")
