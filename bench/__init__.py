"""The benchmark lab, run from a checkout (not installed with fastmlp).

    python -m bench [--quick] [--rounds 7] [--report docs/performance.md]   the report
    python -m bench --sparse | --contention | --dask                        one study
    pytest bench/ --benchmark-only                                          pytest-benchmark
    python -m bench.fingerprints, python -m bench.phases, ...               the probes

`harness` times contenders side by side (W1-W4 steps, fits, GEMM floors); `jax_peer` is
the same MLP written in JAX; `sparse_text`, `contention` and `dask_scaling` are the studies
behind the performance report's other sections. The lab needs the `[bench]` extra
(matplotlib for the plot) and, for their columns, torch and JAX.
"""
