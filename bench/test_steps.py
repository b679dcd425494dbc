"""Time per SGD step on the workloads W1-W4 (harness.WORKLOADS), every backend, beside the floors.

Each benchmark times one call of a contender (workload.steps SGD steps); pytest-benchmark
reports it, and `extra_info["us_per_step"]` divides by the steps. Warm-up (JIT compile)
happens before timing. Every fastmlp contender is first checked against the reference once,
so a fast wrong path fails here.
"""
import numpy as np
import pytest
from bench.harness import BACKENDS, DTYPES, dtype_id

from fastmlp import MLP
from bench import harness as B
from bench import jax_peer

WORKLOADS = list(B.WORKLOADS)


def _check_against_reference(backend, workload, dtype):
    X, Y = B.data(workload, dtype, seed=1)
    steps = min(workload.steps, 3)
    X, Y = X[: steps * workload.batch], Y[: steps * workload.batch]
    nets = [MLP(workload.layers, dtype=dtype, backend=b, random_state=0) for b in ("numpy", backend)]
    losses = [net.train_epoch(X, Y, batch_size=workload.batch, learning_rate=1e-3) for net in nets]
    rtol = 1e-3 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(losses[1], losses[0], rtol=rtol)
    np.testing.assert_allclose(nets[1].theta, nets[0].theta, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("contender", BACKENDS + ["gemm-floor", "kernels-blas-floor",
                                                  "jax-scan", "torch-eager"])
@pytest.mark.parametrize("wid", WORKLOADS)
def test_step(benchmark, wid, contender, dtype):
    workload = B.WORKLOADS[wid]
    if wid == "W4" and contender == "numpy" and benchmark.disabled:
        pytest.skip("W4 reference step is seconds long; skipped in smoke mode")
    X, Y = B.data(workload, dtype)
    if contender == "gemm-floor":
        run = B.gemm_floor(workload, dtype, X, Y)
    elif contender == "kernels-blas-floor":
        run = B.scipy_blas_floor(workload, dtype, X, Y)
    elif contender == "jax-scan":
        run = jax_peer.step(workload, dtype, X, Y)
        if run is None:
            pytest.skip("JAX is not installed (pip install 'jax[cpu]' to compare)")
        benchmark.extra_info["compile_s"] = run.compile_seconds
    elif contender == "torch-eager":
        run = B.torch_step(workload, dtype, X, Y)
        if run is None:
            pytest.skip("PyTorch is not installed (pip install torch==2.13.0 to compare)")
    else:
        _check_against_reference(contender, workload, dtype)
        run = B.fastmlp_step(contender, workload, dtype, X, Y)
    run()  # warm-up outside the timing: JIT compilation, first-touch pages
    benchmark.group = f"{wid}-{dtype_id(dtype)}"
    benchmark.extra_info["steps"] = workload.steps
    benchmark.pedantic(run, rounds=5 if wid != "W4" else 3, iterations=1)
    if benchmark.stats:
        benchmark.extra_info["us_per_step"] = 1e6 * benchmark.stats.stats.median / workload.steps
