"""How promptly Ctrl-C stops a fit, and what sizing the compiled calls by time costs.

    python -m bench.interrupts [--busy] [--rounds 5]

1. SIGINT 2 s into a fit on 200k rows × 32 features (4 classes, adam, batch 200) of
   (64,), (128,128), (512,) and (16384,) networks, each in a fresh child process: seconds
   from the signal to the fit's return, for fastmlp's compiled backends and scikit-learn.
2. The calls of a digits fit (200 epochs) and an MNIST-shaped fit (784-100-100-10, 3 epochs):
   seconds per compiled call (median, max) and epochs per call, with the calls sized by time
   (the default) and as before, up to 64 epochs per call whatever they take; the two
   alternate, round after round, and the fit times are medians.

--busy runs everything beside a CPU-bound neighbour process (one core spinning), as on a
shared machine.
"""
import argparse
import json
import multiprocessing
import signal
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

CHILD = r"""
import json, sys, time, warnings
import numpy as np
library, hidden = sys.argv[1], tuple(int(h) for h in sys.argv[2].split(","))
rng = np.random.RandomState(0)
X = rng.standard_normal((200_000, 32)).astype(np.float32)
y = (X[:, :4].sum(1) > 0).astype(int) + 2 * (X[:, 4] > 0)
if library == "sklearn":
    from sklearn.neural_network import MLPClassifier
    make = lambda **kw: MLPClassifier(hidden, **kw)
else:
    from fastmlp import MLPClassifier
    make = lambda **kw: MLPClassifier(hidden, backend=library, **kw)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    make(max_iter=1).fit(X[:512], y[:512])
print("ready", flush=True)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = make(max_iter=500, random_state=0).fit(X, y)
print(json.dumps(dict(returned=time.monotonic(), epochs=model.n_iter_)), flush=True)
"""


def _spin(stop):
    while not stop.is_set():
        pass


def sigint_latency(library, hidden):
    process = subprocess.Popen([sys.executable, "-c", CHILD, library, hidden],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(2.0)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        out = json.loads(process.stdout.readline())
        process.wait(600)
    except (json.JSONDecodeError, subprocess.TimeoutExpired):
        process.kill()
        return float("nan"), None
    return out["returned"] - sent, out["epochs"]


def call_pace(problem, rounds):
    """Per-call seconds and epochs of a fit, time-sized against fixed 64-epoch chunks."""
    from fastmlp import MLPClassifier, training
    from fastmlp.model import TrainingJob
    from bench.harness import digits_problem, mnist_shaped_problem

    if problem == "digits":
        X, _, y, _ = digits_problem(np.float64)
        params = dict(hidden_layer_sizes=(100,), max_iter=200, n_iter_no_change=1000)
    else:
        X, _, y, _ = mnist_shaped_problem(np.float32)
        params = dict(hidden_layer_sizes=(100, 100), max_iter=3)
    calls, original = [], TrainingJob.run

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        result = original(self, *args, **kwargs)
        calls.append((time.perf_counter() - start, len(result[0])))
        return result

    by_time = training._Epochs._epochs_per_call
    sizings = {"by time": (by_time, training.CALL_BUDGET),  # as before: 64, no budget
               "64 per call": (lambda self: training.MAX_CHUNK_EPOCHS, float("inf"))}
    fits = {name: [] for name in sizings}
    pace = {}
    TrainingJob.run = timed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPClassifier(**dict(params, max_iter=1)).fit(X[:256], y[:256])
            for _ in range(rounds):
                for name, (epochs_per_call, budget) in sizings.items():
                    training._Epochs._epochs_per_call = epochs_per_call
                    training.CALL_BUDGET = budget
                    calls.clear()
                    start = time.perf_counter()
                    MLPClassifier(**params, random_state=0).fit(X, y)
                    fits[name].append(time.perf_counter() - start)
                    pace[name] = list(calls)
    finally:
        TrainingJob.run = original
        training._Epochs._epochs_per_call, training.CALL_BUDGET = sizings["by time"]
    rows = []
    for name in sizings:
        seconds = [s for s, _ in pace[name]]
        rows.append((problem, name, statistics.median(fits[name]), len(seconds),
                     statistics.median(seconds), max(seconds),
                     max(k for _, k in pace[name])))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", action="store_true", help="beside a CPU-bound neighbour")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import fastmlp

    neighbour = stop = None
    if args.busy:
        stop = multiprocessing.Event()
        neighbour = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
        neighbour.start()
    try:
        print(f"# SIGINT 2 s into a fit on 200k rows ({'busy' if args.busy else 'idle'})")
        print("| library | hidden | seconds to return | epochs done |\n|---|---|---|---|")
        libraries = [b for b in ("cython", "numba") if b in fastmlp.available_backends()]
        for library in [*libraries, "sklearn"]:
            for hidden in ("64", "128,128", "512", "16384"):
                if library == "sklearn" and hidden == "16384":
                    continue  # minutes per epoch in scikit-learn; its minibatch is the unit too
                latency, epochs = sigint_latency(library, hidden)
                print(f"| {library} | ({hidden}) | {latency:.3f} | {epochs} |", flush=True)
        print("\n# compiled calls of a fit: sized by time vs up to 64 epochs each")
        print("| fit | sizing | fit s (median) | calls | s/call median | s/call max | "
              "max epochs/call |\n|---|---|---|---|---|---|---|")
        for problem in ("digits", "mnist-shaped"):
            for row in call_pace(problem, args.rounds):
                print("| {} | {} | {:.3f} | {} | {:.4f} | {:.4f} | {} |".format(*row),
                      flush=True)
    finally:
        if neighbour is not None:
            stop.set()
            neighbour.join()


if __name__ == "__main__":
    main()
