"""The Dask scaling benchmark (bench/dask_scaling.py), small: it runs, its fits agree with the
single-process fit, and its report and model are complete. Its timings are not judged."""
import pytest

pytest.importorskip("distributed")


def test_the_dask_scaling_benchmark_runs_and_agrees():
    from bench import dask_scaling as dask_bench

    measured = dask_bench.run(rows=8_000, batches=(2_000, 8_000), epochs=1, workers=2,
                              rounds=1)
    for r in measured["results"]:
        assert r["steps"] == 8_000 // r["batch"]
        assert r["max_relative_difference"] < 1e-4  # float32 sums in another order
        assert r["dist_step"] > 0 and r["parts"]["slowest_shard"] <= r["parts"]["round_trip"]
    model = dask_bench.model(measured)
    assert sorted(model["batches"]) == list(dask_bench.MODEL_WORKERS)
    assert model["batches"][128] > model["batches"][32] > model["batches"][8] > 0
    report = dask_bench.text(measured)
    assert "80% efficiency" in report and "floor of the overhead" in report
