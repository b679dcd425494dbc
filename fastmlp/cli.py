"""The `fastmlp` command: `fastmlp train` (the main job), `fastmlp config`."""
import argparse
import sys
import time

import numpy as np


def _digits_split(dtype, seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(dtype)  # pixel intensities 0..16 scaled to [0, 1]
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def train(args):
    """Train on scikit-learn's bundled digits; compare accuracy and fit time with sklearn."""
    from tqdm import tqdm

    from . import MLP

    dtype = np.dtype(args.dtype)
    X_train, X_test, y_train, y_test = _digits_split(dtype, args.seed)
    n_classes = int(y_train.max()) + 1
    Y_train = np.eye(n_classes, dtype=dtype)[y_train]
    net = MLP([X_train.shape[1], *args.hidden, n_classes], "relu", "softmax", "cross_entropy",
              dtype=dtype, backend=args.backend, random_state=args.seed, n_threads=args.n_threads)
    print(f"fastmlp: training {net} on digits ({len(X_train)} train / {len(X_test)} test rows)")
    # Warm-up on 8 rows: compiles the kernels (or loads them from the cache), so the fit time
    # below is run time only; compile time is reported apart.
    start = time.perf_counter()
    warm = MLP(net.arch.layer_sizes, "relu", "softmax", "cross_entropy", dtype=dtype,
               backend=args.backend, random_state=0)
    warm.train_epoch(X_train[:8], Y_train[:8], batch_size=4, optimizer="adam")
    warm.forward(X_train[:2])
    print(f"warm-up (JIT compile or cache load): {time.perf_counter() - start:.2f} s")
    rng = np.random.RandomState(args.seed)
    start = time.perf_counter()
    bar = tqdm(range(args.epochs), desc="fastmlp", unit="epoch", disable=args.quiet)
    for _ in bar:
        loss = net.train_epoch(X_train, Y_train, batch_size=args.batch_size,
                               learning_rate=args.learning_rate, optimizer="adam",
                               order=rng.permutation(len(X_train)))
        bar.set_postfix(loss=f"{loss:.4f}")
    fit_time = time.perf_counter() - start
    accuracy = np.mean(net.forward(X_test).argmax(1) == y_test)
    print(f"fastmlp  [{net.backend.name}/{dtype.name}]: test accuracy {accuracy:.4f}, "
          f"fit {fit_time:.3f} s")

    if not args.no_compare:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
        import warnings

        sk = MLPClassifier(hidden_layer_sizes=tuple(args.hidden), batch_size=args.batch_size,
                           learning_rate_init=args.learning_rate, max_iter=args.epochs,
                           n_iter_no_change=args.epochs + 1, random_state=args.seed)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sk.fit(X_train, y_train)
        sk_time = time.perf_counter() - start
        print(f"sklearn  MLPClassifier: test accuracy {sk.score(X_test, y_test):.4f}, "
              f"fit {sk_time:.3f} s  ({sk_time / fit_time:.1f}x fastmlp's time)")
    return 0


def bench(args):
    """Time W1-W4 steps of every backend beside the reference, the GEMM floor and PyTorch."""
    import json
    import os

    from tqdm import tqdm

    from . import benchmarking as B
    from .show import config as machine

    workloads = args.workloads or (["W1", "W2", "W3"] if args.quick else list(B.WORKLOADS))
    dtypes = [np.dtype(d) for d in args.dtypes]
    bar = tqdm(total=len(workloads) * len(dtypes), desc="bench", unit="case",
               disable=args.quiet)
    rows = B.step_table(workloads, dtypes, rounds=3 if args.quick else args.rounds,
                        quick=args.quick, n_threads=args.n_threads,
                        progress=lambda w, d: (bar.set_postfix_str(f"{w} {d}"), bar.update()))
    bar.close()
    forward = B.forward_vs_gemm(dtypes=dtypes, rounds=5 if args.quick else 15)
    print(B.ratio_table(rows))
    print()
    for r in forward:
        print(f"forward_layer {r['shape']} {r['dtype']:8} {r['contender']:10} "
              f"{r['us_per_call']:9.1f} us")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump({"machine": machine(), "command": " ".join(["fastmlp", "bench", *args.argv]),
                   "steps": rows, "forward_layer": forward}, f, indent=2)
    print(f"wrote {path}")
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
    p = sub.add_parser("train", help="train on the built-in digits data set")
    p.add_argument("--hidden", type=int, nargs="+", default=[100], help="hidden layer sizes")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--backend", default="auto")
    p.add_argument("--n-threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-compare", action="store_true", help="skip the scikit-learn fit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=train)
    p = sub.add_parser("bench", help="time training steps against the reference, GEMMs, torch")
    p.add_argument("--quick", action="store_true", help="W1-W3, fewer steps and rounds")
    p.add_argument("--workloads", nargs="+", choices=["W1", "W2", "W3", "W4"])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                   choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--n-threads", type=int, default=None)
    p.add_argument("--out", default="bench-results", help="directory for results.json and the plot")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=bench)
    p = sub.add_parser("config", help="show backends, BLAS, OpenMP and threads")
    p.set_defaults(func=config)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
