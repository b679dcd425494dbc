"""The `fastmlp` command: `fastmlp train` (the main job), `predict`, `bench`, `config`."""
import argparse
import os
import sys
import time

import numpy as np

from .tabular import UsageError


def _digits(seed):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y  # pixel intensities 0..16 scaled to [0, 1]


def _fastmlp_model(estimator):
    """The fastmlp estimator inside a Pipeline / TransformedTargetRegressor (or itself)."""
    while True:
        if hasattr(estimator, "steps"):
            estimator = estimator.steps[-1][1]
        elif hasattr(estimator, "regressor"):
            estimator = getattr(estimator, "regressor_", estimator.regressor)
        else:
            return estimator


def _check_writable(path):
    """Before a fit that may take minutes: can `path` be written?"""
    import os

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"--save {path}: no directory {directory}")
    if os.path.isdir(path):
        raise UsageError(f"--save {path}: a directory")
    if not os.access(directory, os.W_OK) or os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"--save {path}: not writable")


def _show(caught):
    """Warnings from a fit, one line each (the interrupt has its own message)."""
    for w in caught:
        if str(w.message) != "Training interrupted by user.":
            print(f"warning: {w.category.__name__}: {w.message}", file=sys.stderr)


def _seconds(start):
    return time.perf_counter() - start


def train(args):
    """Fit MLPClassifier/MLPRegressor (scikit-learn's defaults) and compare with scikit-learn;
    a CSV file gets a Pipeline of the preprocessing its columns need in front. Reading,
    preprocessing and fitting are timed apart; the preprocessing is fitted once, and both
    models fit its output."""
    import warnings

    from sklearn.base import clone
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from . import MLPClassifier, MLPRegressor, config_context, save, tabular

    regress = args.regress
    dtype = np.dtype(args.dtype)
    Model = MLPRegressor if regress else MLPClassifier
    params = dict(hidden_layer_sizes=tuple(args.hidden), max_iter=args.max_iter,
                  random_state=args.seed)
    model = Model(**params, backend=args.backend, n_threads=args.n_threads,
                  verbose=args.verbose)
    try:
        from .backends import get_backend
        from .estimators import checked_params

        checked_params(model)

        get_backend(args.backend)
    except (ValueError, TypeError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    if args.save:
        _check_writable(args.save)
    start = time.perf_counter()
    if args.csv:
        frame, notes = tabular.read_csv(args.csv)
        X, y, more = tabular.split_target(frame, args.target, args.csv, regress)
        X, identifiers = tabular.without_identifiers(X)
        X = tabular.as_features(X, dtype)
        notes += more + identifiers
        name = args.csv
    else:
        X, y = _digits(args.seed)
        X, notes, name = X.astype(dtype), [], "scikit-learn's digits"
    read_s = _seconds(start)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=args.seed, stratify=None if regress else y)

    start = time.perf_counter()
    pre = None
    if args.csv:  # the digits are already in [0, 1]; a CSV's columns need preparing
        pre, more = tabular.preprocessor(X_train, dtype)
        notes.extend(more)
        X_fit = pre.fit_transform(X_train)
    else:
        X_fit = X_train
    preprocess_s = _seconds(start)

    def final(estimator):  # a regressor learns a standardised target
        if not regress or not args.csv:
            return estimator
        return TransformedTargetRegressor(regressor=estimator, transformer=StandardScaler())

    def whole(fitted):  # the model that predicts raw rows
        return fitted if pre is None else Pipeline([("preprocess", pre), ("model", fitted)])

    print(f"fastmlp: {Model.__name__}{params} on {name}: {len(X_train)} train / "
          f"{len(X_test)} test rows, {X.shape[1]} columns, {dtype.name}")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    if args.csv:
        print(whole(final(model)))

    # Warm-up on a few hundred rows (enough for the multi-threaded minibatch path): compiles
    # the kernels (or loads them from the cache) and starts the thread pools, so the fit time
    # below is run time only.
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final(clone(model).set_params(max_iter=1, verbose=False)).fit(X_fit[:256],
                                                                      y_train[:256])
    warm_s = _seconds(start)
    print(f"read {read_s:.2f} s, preprocess {preprocess_s:.2f} s, warm-up (JIT compile or "
          f"cache load) {warm_s:.2f} s")

    # One display: a progress bar on a terminal (none with --quiet), scikit-learn's
    # per-epoch lines with --verbose, else the summary below.
    bar = (not args.quiet) and sys.stderr.isatty()
    estimator = final(model)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, config_context(progress_bar=bar):
        warnings.simplefilter("always")
        estimator.fit(X_fit, y_train)
    fit_time = _seconds(start)
    _show(caught)
    fitted = _fastmlp_model(estimator)
    estimator = whole(estimator)
    metric = "R^2" if regress else "accuracy"
    if any(str(w.message) == "Training interrupted by user." for w in caught):
        # Ctrl-C: the user wants to stop — no comparison, and the partial model saved only
        # when asked for (what was at --save stays otherwise)
        kept = "nothing saved"
        if args.save and args.save_partial:
            kept = f"the partial model saved to {save(estimator, args.save)}"
        print(f"fastmlp  [{fitted.backend_}]: interrupted by Ctrl-C after {fitted.n_iter_} "
              f"epochs ({fit_time:.3f} s); {kept}, no comparison run", file=sys.stderr)
        return 130
    print(f"fastmlp  [{fitted.backend_}]: test {metric} {estimator.score(X_test, y_test):.4f}, "
          f"fit {fit_time:.3f} s ({fitted.n_iter_} epochs)")
    if args.save:
        print(f"saved to {save(estimator, args.save)}")
    if not args.no_compare:
        return _compare(regress, params, final, whole, X_fit, y_train, X_test, y_test,
                        fit_time, metric)
    return 0


def _compare(regress, params, final, whole, X_fit, y_train, X_test, y_test, fit_time,
             metric):
    """scikit-learn's own MLP on the same preprocessed rows, fairly timed
    (fastmlp/comparison.py): on a busy machine also with one BLAS thread, the faster run
    counting, the machine's load beside the figure."""
    import warnings

    from sklearn.neural_network import MLPClassifier as SkClassifier
    from sklearn.neural_network import MLPRegressor as SkRegressor

    from . import comparison

    Sk = SkRegressor if regress else SkClassifier
    busy = comparison.others_busy()
    runs = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for label, limit in comparison.sklearn_runs(busy).items():
            comparison.timed_fit(final(Sk(**dict(params, max_iter=1))), X_fit[:256],
                                 y_train[:256], limit)  # warm-up
            sk = final(Sk(**params))
            runs[label] = (comparison.timed_fit(sk, X_fit, y_train, limit), sk)
    if any(str(w.message) == "Training interrupted by user." for w in caught):
        print("sklearn: comparison interrupted by Ctrl-C", file=sys.stderr)
        return 130
    sk_time, sk = min(runs.values(), key=lambda run: run[0])
    how = {"sklearn": "with its BLAS threads", "sklearn, 1 BLAS thread": "with 1 BLAS thread"}
    times = (f"fit {sk_time:.3f} s" if len(runs) == 1 else
             ", ".join(f"fit {t:.3f} s {how[label]}" for label, (t, _) in runs.items()))
    print(f"sklearn  {type(_fastmlp_model(sk)).__name__}: test {metric} "
          f"{whole(sk).score(X_test, y_test):.4f}, {times} ({_fastmlp_model(sk).n_iter_} "
          f"epochs); fastmlp is {sk_time / fit_time:.2f}x faster")
    print(f"machine: {comparison.load_note(busy)}")
    return 0


def _text_columns(estimator):
    """The columns a fitted `fastmlp train` pipeline one-hot encodes (None: not known)."""
    steps = getattr(estimator, "steps", None)
    pre = steps[0][1] if steps else None
    for name, _, columns in getattr(pre, "transformers_", ()):
        if name == "categorical":
            return list(columns)
    return [] if pre is not None and hasattr(pre, "transformers_") else None


def predict(args):
    """Predictions of a saved model (or pipeline) for every row of a CSV file."""
    import pandas as pd

    from . import load, tabular

    try:
        estimator = load(args.model)
    except FileNotFoundError:
        raise UsageError(f"--model {args.model}: no such file") from None
    except (ValueError, OSError) as exc:
        raise UsageError(f"--model {args.model}: {exc}") from None
    frame, notes = tabular.read_csv(args.csv)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        raise UsageError(f"--model {args.model} was fitted without column names (not from a "
                         "CSV file), so the columns to use are not known")
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise UsageError(f"{args.csv}: the model needs columns {missing}, which the file "
                         "lacks")
    X = frame[list(names)]
    dtype = getattr(getattr(_fastmlp_model(estimator), "_net", None), "dtype", np.float64)
    X = tabular.as_features(X, dtype, categorical=_text_columns(estimator))
    try:
        out = pd.DataFrame({args.column: estimator.predict(X)}, index=frame.index)
        if args.proba:
            if not hasattr(estimator, "predict_proba"):
                raise UsageError("--proba: the model is a regressor")
            proba = estimator.predict_proba(X)
            for label, column in zip(_fastmlp_model(estimator).classes_, proba.T):
                out[f"proba_{label}"] = column
    except ValueError as exc:  # a value the fitted steps cannot take
        raise UsageError(f"{args.csv}: {tabular.first_line(exc)}") from None
    if args.out:
        out.to_csv(args.out, index=False)
        print(f"wrote {len(out)} predictions to {args.out}", file=sys.stderr)
    else:
        out.to_csv(sys.stdout, index=False)
    return 0


def bench(args):
    """The digits fit, fastmlp beside scikit-learn on this machine (fastmlp/comparison.py)."""
    from tqdm import tqdm

    from . import comparison
    from .backends import get_backend

    try:
        get_backend(args.backend)
    except (ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    busy = comparison.others_busy()
    bar = tqdm(total=len(args.dtypes), desc="bench", unit="dtype", disable=args.quiet)
    rows = comparison.run(args.dtypes, args.rounds, args.backend, args.n_threads, busy,
                          progress=lambda dtype: bar.update())
    bar.close()
    print(comparison.text(rows, busy, args.rounds))
    if args.out:
        import json

        from .show import config as machine

        with open(args.out, "w") as f:
            json.dump({"command": " ".join(["fastmlp", "bench", *args.argv]),
                       "machine": machine(), "others_busy_cpus": busy, "fits": rows}, f,
                      indent=2)
        print(f"wrote {args.out}")
    return 0


def config(args):
    from .show import show_config

    show_config()
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake in the options told in one line (and where help is)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(prog="fastmlp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train on the built-in digits data set or a CSV file")
    p.add_argument("--csv", help="a CSV file with a header row; its separator and decimal "
                                 "mark are detected (default: scikit-learn's digits)")
    p.add_argument("--target", help="the CSV column to predict (default: none; required with "
                                    "--csv)")
    p.add_argument("--regress", action="store_true",
                   help="predict a number (default: classify)")
    p.add_argument("--save", help="write the fitted model here, preprocessing included; "
                                  "fastmlp predict and fastmlp.load read it (default: not "
                                  "saved; an interrupted fit saves nothing)")
    p.add_argument("--save-partial", action="store_true",
                   help="with --save: after Ctrl-C, save the model as far as it trained "
                        "(default: keep what was at --save)")
    p.add_argument("--hidden", type=int, nargs="+", default=[100], metavar="UNITS",
                   help="units per hidden layer, e.g. --hidden 64 32 (default: 100)")
    p.add_argument("--max-iter", type=int, default=200,
                   help="epochs at most, scikit-learn's max_iter (default: 200)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="the precision trained in; float32 is about twice as fast "
                        "(default: float64)")
    p.add_argument("--backend", default="auto",
                   help="the kernels: cython, numba, numpy or auto, the fastest installed "
                        "(default: auto)")
    p.add_argument("--n-threads", type=int, default=None,
                   help="threads for the fit (default: the CPUs other processes leave free)")
    p.add_argument("--seed", type=int, default=0,
                   help="random_state of the split and both fits (default: 0)")
    p.add_argument("--no-compare", action="store_true",
                   help="skip the scikit-learn fit (default: compare with it)")
    p.add_argument("--verbose", action="store_true",
                   help="print scikit-learn's line per epoch (default: a progress bar on a "
                        "terminal, a summary otherwise)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no per-epoch lines (default: a bar on a terminal)")
    p.set_defaults(func=train)
    p = sub.add_parser("predict", help="predictions of a saved model for the rows of a CSV file")
    p.add_argument("--model", required=True, help="a file written by fastmlp train --save")
    p.add_argument("--csv", required=True, help="the rows to predict, with the training columns")
    p.add_argument("--out", help="write the predictions here as CSV (default: standard output)")
    p.add_argument("--column", default="prediction", help="the predictions' column name")
    p.add_argument("--proba", action="store_true",
                   help="a classifier's class probabilities too, a column per class")
    p.set_defaults(func=predict)
    p = sub.add_parser("bench", help="fastmlp against scikit-learn on this machine: the "
                                     "digits fit and a one-row prediction")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                   choices=["float32", "float64"], help="default: both")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds; the median counts (default: 3)")
    p.add_argument("--backend", default="auto", help="fastmlp's backend (default: auto)")
    p.add_argument("--n-threads", type=int, default=None,
                   help="fastmlp's threads (default: adapted to the machine's load)")
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
    except UsageError as exc:  # the user's mistake: one line, not a traceback
        print(f"fastmlp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `fastmlp predict ... | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:  # outside a fit (loading, warm-up): stop, without a traceback
        print("fastmlp: interrupted by Ctrl-C", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
