"""Data-parallel training on Dask against the single-process fit: per-step overhead and
throughput for a large global minibatch.

Run: python bench/dask_scaling.py [--rows 200000] [--batch 20000] [--workers 2]

Prints seconds per step and rows per second for the single-process fit and for
fastmlp.distributed.fit on a LocalCluster, and the per-step overhead (distributed step time
minus the single-process step time spread over the workers).
"""
import argparse
import time
import warnings

import numpy as np


def main(argv=None):
    import dask.array as da
    from distributed import Client, LocalCluster
    from sklearn.exceptions import ConvergenceWarning

    from fastmlp import MLPClassifier
    from fastmlp import distributed as fd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    X = rng.random((args.rows, 256), dtype=np.float64).astype(np.float32)
    y = (X[:, :10].sum(1) * 3).astype(int) % 10
    steps = args.epochs * -(-args.rows // args.batch)
    kw = dict(hidden_layer_sizes=(256, 128), solver="sgd", batch_size=args.batch,
              max_iter=args.epochs, random_state=0, shuffle=True)
    warnings.simplefilter("ignore", ConvergenceWarning)

    MLPClassifier(**dict(kw, max_iter=1)).fit(X[: args.batch], y[: args.batch])  # warm-up
    start = time.perf_counter()
    MLPClassifier(**kw, n_threads=1).fit(X, y)
    single_1 = time.perf_counter() - start
    start = time.perf_counter()
    MLPClassifier(**kw).fit(X, y)
    single = time.perf_counter() - start

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        X_d = da.from_array(X, chunks=(args.rows // (2 * args.workers), -1))
        y_d = da.from_array(y, chunks=args.rows // (2 * args.workers))
        fd.fit(MLPClassifier(**dict(kw, max_iter=1)), X_d, y_d, client=client)  # warm-up
        start = time.perf_counter()
        fd.fit(MLPClassifier(**kw), X_d, y_d, client=client)
        dist = time.perf_counter() - start

    print(f"{args.rows} rows x 256 features, 256-128-10 relu, global batch {args.batch}, "
          f"{steps} sgd steps")
    print(f"{'run':34} {'s/step':>9} {'rows/s':>10}")
    for name, seconds in [("single process, 1 thread", single_1),
                          ("single process, all threads", single),
                          (f"dask LocalCluster {args.workers}x1 thread", dist)]:
        print(f"{name:34} {seconds / steps:9.4f} {args.rows * args.epochs / seconds:10.0f}")
    overhead = dist / steps - single_1 / steps / args.workers
    print(f"per-step overhead of the distributed step over ideal scaling: {overhead * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
