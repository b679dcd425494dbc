"""Prediction latency (bench/latency.py): one row and 32 rows through every contender, the
same weights in each, their answers checked against scikit-learn's."""
import numpy as np
import pytest

from bench import latency as L
from bench.harness import DTYPES, dtype_id


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("rows", [1, 32])
@pytest.mark.parametrize("problem", list(L.PROBLEMS))
def test_prediction(benchmark, problem, rows, dtype):
    X = np.random.default_rng(1).random((1000, L.PROBLEMS[problem][0])).astype(dtype)
    runs, sk = L.contenders(L.PROBLEMS[problem], dtype, X)
    L._check(runs, sk, X)
    run = runs["fastmlp-" + next(n.split()[0][8:] for n in runs if n.startswith("fastmlp"))
               + " predict_proba"]
    benchmark(run, X[:rows])


def test_the_latency_report_is_complete():
    results = L.run(problems=("digits",), dtypes=(np.float32,), rows=(1, 32), rounds=1,
                    conditions=("idle",))
    text = L.text(results)
    for contender in ("sklearn predict_proba", "sklearn predict", "numpy forward"):
        assert f"| {contender} |" in text
    assert all(r["p99_us"] >= r["median_us"] > 0 for r in results)
