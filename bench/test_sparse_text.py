"""MLPClassifier on a sparse TF-IDF corpus (bench/sparse_text.py), fastmlp beside scikit-learn.

The full workload — 20 000 documents x 50 000 terms, hidden (100,), adam, 10 epochs — under
--benchmark-only; in smoke mode (--benchmark-disable) a 2 000 x 10 000 slice for 2 epochs.
Each fastmlp fit must reach scikit-learn's test accuracy minus one point, so a fast wrong fit
fails here. `python -m bench --sparse` reports the same workload with peak memory, each fit in
a process of its own.
"""
import warnings

import pytest
from bench.harness import DTYPES, dtype_id
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkClassifier

from fastmlp import MLPClassifier, available_backends
from bench import sparse_text as S

CONTENDERS = [f"fastmlp-{b}" for b in available_backends() if b != "numpy"] + ["sklearn"]


def _make(contender, params):
    if contender == "sklearn":
        return SkClassifier(**params)
    return MLPClassifier(backend=contender.split("-")[1], **params)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("contender", CONTENDERS)
def test_sparse_text_fit(benchmark, contender, dtype):
    smoke = benchmark.disabled
    corpus = dict(S.CORPUS, n_docs=2000, n_terms=10_000) if smoke else S.CORPUS
    params = dict(S.FIT, max_iter=2) if smoke else S.FIT
    X, y = S.corpus(**corpus, dtype=dtype)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0,
                                                        stratify=y)
    benchmark.group = f"fit-sparse-text-{dtype_id(dtype)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _make(contender, dict(params, max_iter=1)).fit(X_train[:256], y_train[:256])  # JIT
        est = benchmark.pedantic(lambda: _make(contender, params).fit(X_train, y_train),
                                 rounds=1 if smoke else 3, iterations=1)
        if contender != "sklearn":
            reference = _make("sklearn", params).fit(X_train, y_train)
            assert est.score(X_test, y_test) >= reference.score(X_test, y_test) - 0.01
            assert est.coefs_[0].dtype == dtype
    benchmark.extra_info["test_score"] = est.score(X_test, y_test)


def test_the_sparse_report_is_complete():
    """python -m bench --sparse's machinery on a tiny corpus: every contender, both dtypes."""
    result = S.run(contenders=("fastmlp-cython", "sklearn"), rounds=1,
                   corpus_params=dict(S.CORPUS, n_docs=600, n_terms=3000),
                   fit_params=dict(S.FIT, max_iter=2))
    rows = result["summary"]
    assert {(r["dtype"], r["contender"]) for r in rows} >= {("float64", "sklearn"),
                                                           ("float32", "sklearn")}
    assert all(r["seconds"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    assert "x faster than sklearn" in S.text(result)
