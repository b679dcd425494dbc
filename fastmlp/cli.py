"""The `fastmlp` command: `fastmlp train` (the main job), `fastmlp config`."""
import argparse
import sys
import time

import numpy as np


def _digits(seed):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y  # pixel intensities 0..16 scaled to [0, 1]


def _read_csv(path, target):
    """Numeric feature columns and the target column (numbers or labels) from a CSV file."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise SystemExit(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise SystemExit(f"{path}: no column {target!r}; columns are {header}")
    t = header.index(target)
    features = [c for c in range(len(header)) if c != t]
    X = np.empty((len(rows) - 1, len(features)))
    y = []
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise SystemExit(f"{path}, line {i + 2}: {len(row)} fields, header has {len(header)}")
        for j, c in enumerate(features):
            try:
                X[i, j] = float(row[c])
            except ValueError:
                raise SystemExit(f"{path}, line {i + 2}: column {header[c]!r} is not a number: "
                                 f"{row[c]!r}") from None
        y.append(row[t].strip())
    try:
        y = np.array([float(v) for v in y])
    except ValueError:
        y = np.array(y)
    return X, y


def train(args):
    """Fit MLPClassifier/MLPRegressor (scikit-learn's defaults) and compare with scikit-learn."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from . import MLPClassifier, MLPRegressor, save

    if args.csv:
        X, y = _read_csv(args.csv, args.target)
        name = args.csv
    else:
        X, y = _digits(args.seed)
        name = "scikit-learn's digits"
    regress = args.regress
    dtype = np.dtype(args.dtype)
    stratify = None if regress else y
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=args.seed, stratify=stratify)
    if args.csv:  # the digits are already in [0, 1]; a user's columns get standardised
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    X_train, X_test = X_train.astype(dtype), X_test.astype(dtype)
    params = dict(hidden_layer_sizes=tuple(args.hidden), max_iter=args.max_iter,
                  random_state=args.seed)
    Model = MLPRegressor if regress else MLPClassifier
    print(f"fastmlp: {Model.__name__}{params} on {name}: {len(X_train)} train / "
          f"{len(X_test)} test rows, {X.shape[1]} features, {dtype.name}")

    # Warm-up on a few hundred rows (enough for the multi-threaded minibatch path): compiles
    # the kernels (or loads them from the cache) and starts the thread pools, so the fit time
    # below is run time only; compile time is reported apart.
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        Model(**dict(params, max_iter=1), backend=args.backend,
              n_threads=args.n_threads).fit(X_train[:256], y_train[:256])
    print(f"warm-up (JIT compile or cache load): {time.perf_counter() - start:.2f} s")

    model = Model(**params, backend=args.backend, n_threads=args.n_threads,
                  verbose=not args.quiet)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    fit_time = time.perf_counter() - start
    for warning in caught:
        if str(warning.message) != "Training interrupted by user.":
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    metric = "R^2" if regress else "accuracy"
    if any(str(w.message) == "Training interrupted by user." for w in caught):
        # Ctrl-C: the user wants to stop — no comparison, and the partial model saved only
        # when asked for (what was at --save stays otherwise)
        kept = "nothing saved"
        if args.save and args.save_partial:
            kept = f"the partial model saved to {save(model, args.save)}"
        print(f"fastmlp  [{model.backend_}]: interrupted by Ctrl-C after {model.n_iter_} "
              f"epochs ({fit_time:.3f} s); {kept}, no comparison run", file=sys.stderr)
        return 130
    print(f"fastmlp  [{model.backend_}]: test {metric} {model.score(X_test, y_test):.4f}, "
          f"fit {fit_time:.3f} s ({model.n_iter_} epochs)")
    if args.save:
        print(f"saved to {save(model, args.save)}")

    if not args.no_compare:
        from sklearn.neural_network import MLPClassifier as SkClassifier
        from sklearn.neural_network import MLPRegressor as SkRegressor

        Sk = SkRegressor if regress else SkClassifier
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            Sk(**dict(params, max_iter=1)).fit(X_train[:256], y_train[:256])  # same warm-up
            sk = Sk(**params)
            start = time.perf_counter()
            sk.fit(X_train, y_train)
            sk_time = time.perf_counter() - start
        if any(str(w.message) == "Training interrupted by user." for w in caught):
            print("sklearn: comparison interrupted by Ctrl-C", file=sys.stderr)
            return 130
        print(f"sklearn  {type(sk).__name__}: test {metric} {sk.score(X_test, y_test):.4f}, "
              f"fit {sk_time:.3f} s ({sk.n_iter_} epochs); fastmlp is "
              f"{sk_time / fit_time:.1f}x faster")
    return 0


def bench(args):
    """Time W1-W4 steps of every backend beside the reference, the GEMM floor and PyTorch."""
    import json
    import os

    from tqdm import tqdm

    from . import benchmarking as B
    from .show import config as machine

    def write(name, **measured):
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w") as f:
            json.dump({"machine": machine(), "command": " ".join(["fastmlp", "bench",
                                                                   *args.argv]),
                       **measured}, f, indent=2, default=str)
        print(f"wrote {path}")
        return 0

    if args.dask:
        from . import dask_bench

        measured = dask_bench.run(rows=100_000 if args.quick else 400_000,
                                  rounds=1 if args.quick else 3)
        print(dask_bench.text(measured))
        return write("dask", dask=measured, model=dask_bench.model(measured))
    if args.contention:
        from . import contention_bench

        measured = contention_bench.run(rounds=1 if args.quick else 3, quick=args.quick,
                                        dtypes=[np.dtype(d) for d in args.dtypes])
        print(contention_bench.text(measured))
        return write("contention", contention=measured)
    if args.sparse:
        from . import sparse_bench

        corpus = dict(sparse_bench.CORPUS, **(dict(n_docs=4000, n_terms=20_000)
                                              if args.quick else {}))
        measured = sparse_bench.run(dtypes=[np.dtype(d) for d in args.dtypes],
                                    rounds=1 if args.quick else 3, corpus_params=corpus)
        print(sparse_bench.text(measured))
        return write("sparse", sparse=measured)
    workloads = args.workloads or (["W1", "W2", "W3"] if args.quick else list(B.WORKLOADS))
    dtypes = [np.dtype(d) for d in args.dtypes]
    rows, forward = [], []
    if not args.fits_only:
        bar = tqdm(total=len(workloads) * len(dtypes), desc="bench", unit="case",
                   disable=args.quiet)
        rows = B.step_table(workloads, dtypes, rounds=3 if args.quick else args.rounds,
                            quick=args.quick, n_threads=args.n_threads,
                            progress=lambda w, d: (bar.set_postfix_str(f"{w} {d}"),
                                                   bar.update()))
        bar.close()
        forward = B.forward_vs_gemm(dtypes=dtypes, rounds=5 if args.quick else 15)
    fits = B.fit_table(("digits",) if args.quick or args.fits_only else
                       ("digits", "mnist-shaped"), dtypes, rounds=1 if args.quick else args.rounds)
    if rows:
        print(B.ratio_table(rows))
        print()
    for r in forward:
        print(f"forward_layer {r['shape']} {r['dtype']:8} {r['contender']:10} "
              f"{r['us_per_call']:9.1f} us")
    print()
    print(B.fit_text(fits))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump({"machine": machine(), "command": " ".join(["fastmlp", "bench", *args.argv]),
                   "steps": rows, "forward_layer": forward, "fits": fits}, f, indent=2)
    print(f"wrote {path}")
    report = args.report or os.path.join(args.out, "report.md")
    os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)
    with open(report, "w") as f:
        f.write(B.markdown_report(rows, forward, fits, machine(),
                                  " ".join(["fastmlp", "bench", *args.argv])))
    print(f"wrote {report}")
    if not rows:
        return 0
    try:
        png = B.plot(rows, os.path.join(args.out, "steps.png"))
        print(f"wrote {png}")
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
    return 0


def config(args):
    from .show import show_config

    show_config()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastmlp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train on the built-in digits data set or a CSV file")
    p.add_argument("--csv", help="a CSV file with a header row (default: the digits data set)")
    p.add_argument("--target", help="the CSV column to predict")
    p.add_argument("--regress", action="store_true", help="regression (default: classification)")
    p.add_argument("--save", help="write the fitted model here (fastmlp.load reads it); "
                                  "an interrupted fit saves nothing")
    p.add_argument("--save-partial", action="store_true",
                   help="with --save: after Ctrl-C, save the model as far as it trained")
    p.add_argument("--hidden", type=int, nargs="+", default=[100], help="hidden layer sizes")
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--backend", default="auto")
    p.add_argument("--n-threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-compare", action="store_true", help="skip the scikit-learn fit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=train)
    p = sub.add_parser("bench", help="time training steps against the reference, GEMMs, torch")
    p.add_argument("--quick", action="store_true", help="W1-W3, fewer steps and rounds")
    p.add_argument("--fits-only", action="store_true",
                   help="only the digits fits against scikit-learn's, --rounds of them")
    p.add_argument("--workloads", nargs="+", choices=["W1", "W2", "W3", "W4"])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                   choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--n-threads", type=int, default=None)
    p.add_argument("--out", default="bench-results", help="directory for results.json and the plot")
    p.add_argument("--report", help="write the markdown report here (default: OUT/report.md); "
                                    "docs/performance.md is this report")
    p.add_argument("--dask", action="store_true",
                   help="only the Dask scaling benchmark (2 workers against 1 process, "
                        "global batch 20k and 100k) and its scaling model")
    p.add_argument("--contention", action="store_true",
                   help="only the busy-machine benchmark: digits and MNIST-shaped fits, idle "
                        "and beside a CPU-bound process it starts, default threads vs "
                        "n_threads=1 vs scikit-learn")
    p.add_argument("--sparse", action="store_true",
                   help="only the sparse text benchmark: a TF-IDF corpus (20k documents x "
                        "50k terms, 20 classes) fitted by fastmlp and scikit-learn")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=bench)
    p = sub.add_parser("config", help="show backends, BLAS, OpenMP and threads")
    p.set_defaults(func=config)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and bool(args.csv) != bool(args.target):
        parser.error("--csv and --target go together")
    if args.command == "train" and args.save_partial and not args.save:
        parser.error("--save-partial needs --save")
    args.argv = argv[1:]
    try:
        return args.func(args)
    except KeyboardInterrupt:  # outside a fit (loading, warm-up): stop, without a traceback
        print("fastmlp: interrupted by Ctrl-C", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
