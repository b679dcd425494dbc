"""One whole fit on Dask against one single-thread process: `python -m bench.dask_fit`.

The figure of issue 41: a 200 000 × 256 float64 array persisted on a LocalCluster of
2 workers × 1 thread before either fit starts, a 256-128-10 classifier, sgd, a global batch
of 100 000 rows, 12 epochs, shuffled. Each round times the single-thread process's fit
(`MLPClassifier(n_threads=1).fit`) and then `fastmlp.distributed.fit`'s, setup included
(building the shards); prints every round, the median ratio, where the distributed fit's
time went (its `timings`) and the largest weight difference.
"""
import argparse
import time
import warnings

import numpy as np

PARAMS = dict(hidden_layer_sizes=(128,), solver="sgd", batch_size=100_000, max_iter=12, tol=0,
              n_iter_no_change=10 ** 6, random_state=0, shuffle=True)


def problem(rows=200_000, features=256, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((rows, features))
    return X, (X[:, :10].sum(1) * 3).astype(int) % 10


def run(rounds=5, workers=2):
    import dask.array as da
    from distributed import Client, LocalCluster, wait
    from sklearn.exceptions import ConvergenceWarning

    from fastmlp import MLPClassifier
    from fastmlp import distributed as fd

    warnings.simplefilter("ignore", ConvergenceWarning)
    X, y = problem()
    rows = []
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        chunks = len(X) // (2 * workers)
        X_d, y_d = client.persist([da.from_array(X, chunks=(chunks, -1)),
                                   da.from_array(y, chunks=chunks)])
        wait([X_d, y_d])
        MLPClassifier(**dict(PARAMS, max_iter=1), n_threads=1).fit(X[:1000], y[:1000])
        fd.fit(MLPClassifier(**dict(PARAMS, max_iter=1)), X_d, y_d, client=client)  # warm
        for _ in range(rounds):  # interleaved: a neighbour's load falls on both
            start = time.perf_counter()
            single = MLPClassifier(**PARAMS, n_threads=1).fit(X, y)
            single_s = time.perf_counter() - start
            timings = {}
            start = time.perf_counter()
            dist = fd.fit(MLPClassifier(**PARAMS), X_d, y_d, client=client, timings=timings)
            dist_s = time.perf_counter() - start
            difference = max(float(np.max(np.abs(a - b))) for a, b in
                             zip(dist.coefs_ + dist.intercepts_,
                                 single.coefs_ + single.intercepts_))
            rows.append(dict(single_s=single_s, dask_s=dist_s, ratio=single_s / dist_s,
                             difference=difference, timings=timings))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = run(args.rounds)
    for r in rows:
        t = r["timings"]
        print(f"1 process {r['single_s']:6.2f} s   dask {r['dask_s']:6.2f} s   "
              f"{r['ratio']:5.2f}x   build {t['build']:.2f} s, steps {t['round_trip']:.2f} s "
              f"(slowest shard {t['slowest_shard']:.2f}), max |Δw| {r['difference']:.1e}")
    ratios = sorted(r["ratio"] for r in rows)
    print(f"median {ratios[len(ratios) // 2]:.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x); "
          f"{len(rows)} interleaved rounds, 2 workers x 1 thread against 1 process x 1 thread")


if __name__ == "__main__":
    main()
