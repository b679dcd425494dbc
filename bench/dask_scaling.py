"""The Dask scaling benchmark and its model: `python -m bench --dask`, `python -m bench.dask_scaling`.

One fit on one process with one thread against the same fit by `fastmlp.distributed.fit` on
a LocalCluster of single-thread workers, per global batch: seconds per step, the fit's setup
apart (building the shards from rows already persisted on the workers: moved into place and
made contiguous once), where a distributed step's time goes (fit's `timings`), and the largest
weight difference (float32, relative to each layer's largest weight). The floor of a step's
overhead is one actor call per worker carrying θ down and a gradient up, measured on the same
cluster. From the measured constants, the scaling model past one machine:

    step(W) = c·b/W + F + 2·W·P·s / bandwidth

for W workers, global batch b, c seconds of compute per row (each core busy), F the fixed
overhead per step, P parameters of s bytes: θ goes down to and a gradient comes up from each
worker through the driver's link. Efficiency (c·b/W) / step(W) reaches 80% at
b = 4·W·(F + 2·W·P·s/bandwidth) / c.
"""
import time
import warnings

import numpy as np

HIDDEN = (256, 128)
FEATURES = 256
EFFICIENCY = 0.8
BANDWIDTH = 10e9 / 8  # bytes per second of a 10 Gb/s link
MODEL_WORKERS = (8, 32, 128)


class _Echo:
    """An actor that returns an array of θ's size: the call floor."""

    def __init__(self, n, dtype):
        self.out = np.zeros(n, dtype)

    def call(self, theta):
        return self.out


def _problem(rows, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((rows, FEATURES), dtype=np.float64).astype(np.float32)
    y = (X[:, :10].sum(1) * 3).astype(int) % 10
    return X, y


def call_floor(client, n_params, dtype, rounds=30):
    """Median seconds of one actor call per worker with θ down and a gradient up."""
    workers = sorted(client.scheduler_info()["workers"])
    actors = [client.submit(_Echo, n_params, dtype, actor=True, workers=[w]).result()
              for w in workers]
    theta = np.zeros(n_params, dtype)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for future in [a.call(theta) for a in actors]:
            future.result()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(rows=400_000, batches=(20_000, 100_000), epochs=3, workers=2, rounds=3):
    """The benchmark's measurements, one dict per global batch (the round with the median
    ratio; every round's step ratio in step_ratios), and the call floor."""
    import dask.array as da
    from distributed import Client, LocalCluster, wait
    from sklearn.exceptions import ConvergenceWarning

    from fastmlp import MLPClassifier
    from fastmlp import distributed as fd

    X, y = _problem(rows)
    results = []
    warnings.simplefilter("ignore", ConvergenceWarning)
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        chunks = -(-rows // (2 * workers))
        # the rows on the workers before either fit starts, as X is in memory for the
        # single process's (from_array would ship them inside every fit's graph)
        X_d, y_d = client.persist([da.from_array(X, chunks=(chunks, -1)),
                                   da.from_array(y, chunks=chunks)])
        wait([X_d, y_d])
        for batch in batches:
            kw = dict(hidden_layer_sizes=HIDDEN, solver="sgd", batch_size=batch,
                      max_iter=epochs, tol=0, n_iter_no_change=10 ** 6, random_state=0)
            MLPClassifier(**dict(kw, max_iter=1), n_threads=1).fit(X[:batch], y[:batch])
            fd.fit(MLPClassifier(**dict(kw, max_iter=1)), X_d[:batch], y_d[:batch],
                   client=client)  # the workers' kernels compiled or loaded
            runs = []
            for _ in range(rounds):  # interleaved: a neighbour's load falls on both sides
                start = time.perf_counter()
                single = MLPClassifier(**kw, n_threads=1).fit(X, y)
                single_seconds = time.perf_counter() - start
                timings = {}
                start = time.perf_counter()
                dist = fd.fit(MLPClassifier(**kw), X_d, y_d, client=client, timings=timings)
                runs.append((single_seconds, time.perf_counter() - start, timings))
            single_seconds, dist_seconds, timings = sorted(
                runs, key=lambda run: run[1] / run[0])[len(runs) // 2]  # the median ratio
            steps = timings["steps"]
            stepping = timings["round_trip"] + timings["reduce"]
            # float32 weights: the largest difference relative to the layer's largest weight
            difference = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                             for a, b in zip(dist.coefs_ + dist.intercepts_,
                                             single.coefs_ + single.intercepts_))
            results.append(dict(
                batch=batch, steps=steps, single_step=single_seconds / steps,
                single_fit=single_seconds, dist_step=stepping / steps, dist_fit=dist_seconds,
                setup=dist_seconds - stepping, build=timings["build"],
                step_ratios=sorted(run[0] / (run[2]["round_trip"] + run[2]["reduce"])
                                   for run in runs),
                parts={k: timings[k] / steps for k in ("round_trip", "slowest_shard", "rows",
                                                        "compute", "reduce")},
                overhead=(timings["round_trip"] - timings["slowest_shard"]) / steps,
                max_relative_difference=difference))
        n_params = single._net.arch.n_params
        floor = call_floor(client, n_params, np.float32)
    return dict(rows=rows, epochs=epochs, workers=workers, rounds=rounds, n_params=n_params,
                itemsize=4,
                hidden=HIDDEN, features=FEATURES, call_floor=floor, results=results)


def model(measured):
    """The scaling model's constants from `run`'s measurements, and the global batch at
    which each of MODEL_WORKERS workers reaches EFFICIENCY on a BANDWIDTH link."""
    largest = max(measured["results"], key=lambda r: r["batch"])
    rows_per_worker = largest["batch"] / measured["workers"]
    c = largest["parts"]["slowest_shard"] / rows_per_worker  # every core busy
    fixed = float(np.median([r["overhead"] for r in measured["results"]]))
    per_worker_bytes = 2 * measured["n_params"] * measured["itemsize"]
    k = EFFICIENCY / (1 - EFFICIENCY)
    batches = {w: k * w * (fixed + w * per_worker_bytes / BANDWIDTH) / c
               for w in MODEL_WORKERS}
    return dict(seconds_per_row=c, single_seconds_per_row=largest["single_step"] /
                largest["batch"], fixed=fixed, bytes_per_worker=per_worker_bytes,
                batches=batches)


def text(measured):
    lines = [f"{measured['rows']} rows x {measured['features']} features, "
             f"{measured['features']}-{'-'.join(map(str, measured['hidden']))}-10 relu, "
             f"sgd, {measured['epochs']} epochs; {measured['workers']} workers x 1 thread "
             f"against 1 process x 1 thread; the median of {measured['rounds']} interleaved "
             "rounds",
             f"{'batch':>7} {'steps':>5} {'1 proc s/step':>13} {'dask s/step':>11} "
             f"{'ratio':>6} {'setup s':>7} {'fit ratio':>9} {'max weight diff':>15}"]
    for r in measured["results"]:
        lines.append(f"{r['batch']:7d} {r['steps']:5d} {r['single_step']:13.4f} "
                     f"{r['dist_step']:11.4f} {r['single_step'] / r['dist_step']:5.2f}x "
                     f"{r['setup']:7.2f} {r['single_fit'] / r['dist_fit']:8.2f}x "
                     f"{r['max_relative_difference']:15.1e}")
    lines.append("each round's step ratio: " + "; ".join(
        f"batch {r['batch']}: " + ", ".join(f"{x:.2f}x" for x in r["step_ratios"])
        for r in measured["results"]))
    lines.append("a distributed step, ms: round trip = slowest shard (rows + compute) + "
                 "transport/call overhead; driver's reduce after")
    for r in measured["results"]:
        p = r["parts"]
        lines.append(f"  batch {r['batch']:6d}: round trip {p['round_trip'] * 1e3:7.1f} = "
                     f"shard {p['slowest_shard'] * 1e3:7.1f} (rows {p['rows'] * 1e3:.1f}"
                     f", compute {p['compute'] * 1e3:.1f}) + overhead "
                     f"{r['overhead'] * 1e3:.1f}; reduce {p['reduce'] * 1e3:.1f}")
    lines.append(f"floor of the overhead (an actor call per worker, θ down, a gradient up: "
                 f"{measured['n_params'] * measured['itemsize'] / 1e3:.0f} KB each way): "
                 f"{measured['call_floor'] * 1e3:.1f} ms")
    m = model(measured)
    lines.append(f"model: c = {m['seconds_per_row'] * 1e6:.2f} us/row with every core busy "
                 f"({m['single_seconds_per_row'] * 1e6:.2f} alone), F = {m['fixed'] * 1e3:.1f}"
                 f" ms, {m['bytes_per_worker'] / 1e3:.0f} KB per worker per step, "
                 f"{BANDWIDTH * 8 / 1e9:.0f} Gb/s")
    for w, b in m["batches"].items():
        lines.append(f"  {w:4d} workers reach {EFFICIENCY:.0%} efficiency at a global batch "
                     f"of {b:,.0f} rows ({b / w:,.0f} per worker)")
    return "\n".join(lines)
