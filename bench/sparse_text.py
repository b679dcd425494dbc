"""The sparse text benchmark: a TF-IDF corpus through MLPClassifier, fastmlp beside scikit-learn.

A synthetic bag-of-words corpus stands in for real text: a Zipfian vocabulary shared by all
documents plus, per class, a Zipfian topic over a few hundred terms of its own, about
`terms_per_doc` tokens a document, counted and TF-IDF weighted by scikit-learn's
TfidfTransformer. Both estimators fit the same CSR matrix with the same parameters (adam,
`epochs` epochs, one hidden layer of 100), each in its own child process so that its peak
resident memory is its own; the JIT compile of the numba backend is a warm-up fit, apart.

`python -m bench --sparse` (or `python -m bench.sparse_text`) prints the table.
"""
import json
import time
import tracemalloc
import warnings

import numpy as np

#: The issue's workload: ≥ 20 000 documents × ≥ 50 000 terms, ~100 terms each, 20 classes.
CORPUS = dict(n_docs=20_000, n_terms=50_000, terms_per_doc=100, n_classes=20)
FIT = dict(hidden_layer_sizes=(100,), solver="adam", max_iter=10, random_state=0)


def corpus(n_docs, n_terms, terms_per_doc, n_classes, topic_terms=1000, topic_share=0.05,
           zipf=1.1, seed=0, dtype=np.float64):
    """(X, y): X an (n_docs, n_terms) TF-IDF CSR matrix of `dtype`, y the class of each."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(seed)
    ranks = np.arange(1, n_terms + 1, dtype=np.float64)
    common = ranks ** -zipf
    common /= common.sum()
    topic = ranks[:topic_terms] ** -zipf
    topic /= topic.sum()
    topics = np.stack([rng.choice(n_terms, topic_terms, replace=False)
                       for _ in range(n_classes)])
    y = rng.integers(0, n_classes, n_docs)
    lengths = rng.poisson(terms_per_doc, n_docs).clip(1)
    doc = np.repeat(np.arange(n_docs), lengths)
    from_topic = rng.random(doc.size) < topic_share
    terms = rng.choice(n_terms, doc.size, p=common)
    terms[from_topic] = topics[y[doc[from_topic]],
                               rng.choice(topic_terms, from_topic.sum(), p=topic)]
    counts = sparse.csr_matrix((np.ones(doc.size), (doc, terms)), shape=(n_docs, n_terms))
    counts.sum_duplicates()
    X = TfidfTransformer().fit_transform(counts).astype(dtype)
    return X, y


def _status_kb(field):
    """A VmRSS / VmHWM line of /proc/self/status in kB (nan where there is none)."""
    try:
        with open("/proc/self/status") as f:
            return next(float(line.split()[1]) for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return float("nan")


def _reset_peak_rss():
    """Start the resident high-water mark (VmHWM) afresh, so the fit's peak is its own and
    not the warm-up's or the corpus build's (Linux: /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _fit_in_child(which, corpus_params, fit_params, dtype, test_fraction):
    """One fit in this (child) process: seconds, peak memory, test accuracy."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    X, y = corpus(**corpus_params, dtype=dtype)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_fraction,
                                                        random_state=0, stratify=y)
    if which == "sklearn":
        from sklearn.neural_network import MLPClassifier
        make = lambda: MLPClassifier(**fit_params)
    else:
        from fastmlp import MLPClassifier
        make = lambda: MLPClassifier(backend=which.split("-")[1], **fit_params)
    compile_seconds = 0.0
    if which == "fastmlp-numba":  # compile the kernels first, on a small slice: apart
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MLPClassifier(backend="numba", **{**fit_params, "max_iter": 1}).fit(
                X_train[:256], y_train[:256])
        compile_seconds = time.perf_counter() - started
    _reset_peak_rss()
    rss_before = _status_kb("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make().fit(X_train, y_train)
    seconds = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _status_kb("VmHWM")
    return dict(contender=which, dtype=np.dtype(dtype).name, seconds=seconds,
                epochs=int(model.n_iter_), accuracy=float(model.score(X_test, y_test)),
                peak_traced_mb=traced_peak / 1e6,
                peak_rss_growth_mb=max(0.0, rss_peak - rss_before) / 1e3,
                compile_seconds=compile_seconds, shape=list(X.shape), nnz=int(X.nnz))


def fit_once(which, dtype, corpus_params=CORPUS, fit_params=FIT, test_fraction=0.2):
    """One contender's fit in a fresh child process (spawned: nothing inherited)."""
    from .harness import in_child

    return in_child(_fit_in_child, which, corpus_params, fit_params, dtype, test_fraction,
                    what=f"the {which} fit")


def run(contenders=("fastmlp-cython", "fastmlp-numba", "sklearn"),
        dtypes=(np.float64, np.float32), rounds=3, corpus_params=CORPUS, fit_params=FIT):
    """Every contender and dtype `rounds` times, interleaved (a noisy machine slows all
    alike); rows keep each fit, `summary` the medians and the ratios to scikit-learn."""
    from fastmlp import available_backends

    contenders = [c for c in contenders
                  if c == "sklearn" or c.split("-")[1] in available_backends()]
    fits = []
    for _ in range(rounds):
        for dtype in dtypes:
            for which in contenders:
                fits.append(fit_once(which, dtype, corpus_params, fit_params))
    return dict(corpus=corpus_params, fit={k: list(v) if isinstance(v, tuple) else v
                                           for k, v in fit_params.items()},
                fits=fits, summary=summary(fits))


def summary(fits):
    rows = []
    for dtype in dict.fromkeys(f["dtype"] for f in fits):
        group = [f for f in fits if f["dtype"] == dtype]
        base = np.median([f["seconds"] for f in group if f["contender"] == "sklearn"] or [np.nan])
        base_rss = np.median([f["peak_rss_growth_mb"] for f in group
                              if f["contender"] == "sklearn"] or [np.nan])
        for which in dict.fromkeys(f["contender"] for f in group):
            mine = [f for f in group if f["contender"] == which]
            seconds = float(np.median([f["seconds"] for f in mine]))
            rss = float(np.median([f["peak_rss_growth_mb"] for f in mine]))
            rows.append(dict(
                dtype=dtype, contender=which, seconds=seconds,
                speedup=float(base / seconds), accuracy=float(np.median([f["accuracy"]
                                                                          for f in mine])),
                peak_traced_mb=float(np.median([f["peak_traced_mb"] for f in mine])),
                peak_rss_growth_mb=rss, rss_vs_sklearn=float(rss / base_rss) if base_rss
                else float("nan"), compile_seconds=float(np.median(
                    [f["compile_seconds"] for f in mine])), rounds=len(mine)))
    return rows


def text(result):
    c = result["corpus"]
    nnz = result["fits"][0]["nnz"]
    lines = [f"Sparse text: {c['n_docs']} documents x {c['n_terms']} terms, {nnz} non-zeros "
             f"(TF-IDF), {c['n_classes']} classes; MLPClassifier{tuple(result['fit']['hidden_layer_sizes'])}"
             f", adam, {result['fit']['max_iter']} epochs; 80/20 split; medians of "
             f"{result['summary'][0]['rounds']} fits, each in its own process",
             "",
             "| dtype | contender | fit s | x faster than sklearn | test accuracy | "
             "peak traced MB | peak RSS growth MB | RSS / sklearn's | JIT compile s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["summary"]:
        lines.append(f"| {r['dtype']} | {r['contender']} | {r['seconds']:.2f} | "
                     f"{r['speedup']:.2f} | {r['accuracy']:.4f} | {r['peak_traced_mb']:.0f} | "
                     f"{r['peak_rss_growth_mb']:.0f} | {r['rss_vs_sklearn']:.2f} | "
                     f"{r['compile_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = run(rounds=args.rounds)
    print(text(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
