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


def train(args):
    """Fit MLPClassifier/MLPRegressor (scikit-learn's defaults) and compare with scikit-learn;
    a CSV file gets a Pipeline of the preprocessing its columns need in front."""
    import warnings

    from sklearn.base import clone
    from sklearn.model_selection import train_test_split

    from . import MLPClassifier, MLPRegressor, save, tabular

    regress = args.regress
    dtype = np.dtype(args.dtype)
    Model = MLPRegressor if regress else MLPClassifier
    params = dict(hidden_layer_sizes=tuple(args.hidden), max_iter=args.max_iter,
                  random_state=args.seed)
    model = Model(**params, backend=args.backend, n_threads=args.n_threads,
                  verbose=not args.quiet)
    try:
        model._check_params()
        model._hidden_sizes()
        from .backends import get_backend

        get_backend(args.backend)
    except (ValueError, TypeError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    if args.save:
        _check_writable(args.save)
    if args.csv:
        frame = tabular.read_csv(args.csv)
        X, y, notes = tabular.split_target(frame, args.target, args.csv, regress)
        X = tabular.as_features(X, dtype)
        name = args.csv
    else:
        X, y = _digits(args.seed)
        X, notes, name = X.astype(dtype), [], "scikit-learn's digits"
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=args.seed, stratify=None if regress else y)

    def whole(model):  # the digits are already in [0, 1]; a CSV's columns need preparing
        if not args.csv:
            return model
        estimator, more = tabular.pipeline(X_train, model, regress, dtype)
        notes.extend(more)
        return estimator

    estimator = whole(model)
    print(f"fastmlp: {Model.__name__}{params} on {name}: {len(X_train)} train / "
          f"{len(X_test)} test rows, {X.shape[1]} columns, {dtype.name}")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    if args.csv:
        print(estimator)

    # Warm-up on a few hundred rows (enough for the multi-threaded minibatch path): compiles
    # the kernels (or loads them from the cache) and starts the thread pools, so the fit time
    # below is run time only; compile time is reported apart.
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole(clone(model).set_params(max_iter=1, verbose=False)).fit(X_train[:256],
                                                                      y_train[:256])
    print(f"warm-up (JIT compile or cache load): {time.perf_counter() - start:.2f} s")

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(X_train, y_train)
    fit_time = time.perf_counter() - start
    _show(caught)
    fitted = _fastmlp_model(estimator)
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
        from sklearn.neural_network import MLPClassifier as SkClassifier
        from sklearn.neural_network import MLPRegressor as SkRegressor

        Sk = SkRegressor if regress else SkClassifier
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            whole(Sk(**dict(params, max_iter=1))).fit(X_train[:256], y_train[:256])  # warm-up
            sk = whole(Sk(**params))
            start = time.perf_counter()
            sk.fit(X_train, y_train)
            sk_time = time.perf_counter() - start
        if any(str(w.message) == "Training interrupted by user." for w in caught):
            print("sklearn: comparison interrupted by Ctrl-C", file=sys.stderr)
            return 130
        print(f"sklearn  {type(_fastmlp_model(sk)).__name__}: test {metric} "
              f"{sk.score(X_test, y_test):.4f}, fit {sk_time:.3f} s "
              f"({_fastmlp_model(sk).n_iter_} epochs); fastmlp is "
              f"{sk_time / fit_time:.1f}x faster")
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
    frame = tabular.read_csv(args.csv)
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
        raise UsageError(f"{args.csv}: {tabular._first_line(exc)}") from None
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
