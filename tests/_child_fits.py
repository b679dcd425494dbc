"""Scenarios that tests/test_interrupts.py runs in a child process, where a hang, a signal
or an exit of the process is a test failure rather than a stuck or ended suite.

    python tests/_child_fits.py SCENARIO [ARGS...]

Each prints "ready" when the parent may act (send a signal), then one JSON line with what
it observed.
"""
import json
import os
import sys
import time
import warnings

import numpy as np

N_ROWS, N_FEATURES, N_CLASSES = 200_000, 32, 4


def _data(n=N_ROWS, dtype=np.float32):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((n, N_FEATURES)).astype(dtype)
    y = (X[:, :4].sum(1) > 0).astype(int) + 2 * (X[:, 4] > 0)
    return X, y


def _report(**values):
    print(json.dumps(values), flush=True)


def _state(model):
    return dict(n_iter=model.n_iter_, t=model.t_, curve=list(model.loss_curve_),
                best_loss=model.best_loss_, count=model._no_improvement_count)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.coefs_ + a.intercepts_,
                                                    b.coefs_ + b.intercepts_))


def sigint(backend, hidden):
    """A fit that the parent interrupts: how long it took to return, and whether the model
    is that of a fit which ran exactly the epochs it reports, and continues as one."""
    from fastmlp import MLP, MLPClassifier

    hidden = tuple(int(h) for h in hidden.split(","))
    X, y = _data()
    params = dict(hidden_layer_sizes=hidden, random_state=0, backend=backend, max_iter=200)
    MLPClassifier(**{**params, "max_iter": 1}).fit(X[:512], y[:512])  # compile (numba)
    print("ready", flush=True)
    model = MLPClassifier(**params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
    returned = time.monotonic()
    state = _state(model)
    k = model.n_iter_
    if k:  # the same fit, told to stop after k epochs
        reference = MLPClassifier(**{**params, "max_iter": k})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference.fit(X, y)
        matches = _same(model, reference) and _state(reference) == state
    else:  # interrupted in its first epoch: the starting weights
        start = MLP([N_FEATURES, *hidden, N_CLASSES], dtype=np.float32, random_state=0)
        matches = all(np.array_equal(a, b) for a, b in zip(model.coefs_ + model.intercepts_,
                                                           start.coefs_ + start.intercepts_))
        _report(returned=returned, state=state, warnings=[str(w.message) for w in caught],
                matches=matches, continues=None)
        return
    # both continue for one epoch, from where they stand
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in (model, reference):
            m.set_params(warm_start=True, max_iter=1).fit(X, y)
    _report(returned=returned, state=state, warnings=[str(w.message) for w in caught],
            matches=matches, continues=_same(model, reference) and model.n_iter_ == 1)


def lbfgs(backend):
    """An lbfgs fit that the parent interrupts: scikit-learn raises KeyboardInterrupt."""
    from fastmlp import MLPClassifier

    X, y = _data(50_000, np.float64)
    MLPClassifier((8,), solver="lbfgs", max_iter=2, backend=backend).fit(X[:256], y[:256])
    print("ready", flush=True)
    # one thread: lbfgs hears Ctrl-C between its kernel calls, and a multi-threaded BLAS
    # call on a machine busy with other processes can take seconds (issue 16's contention)
    model = MLPClassifier((256,), solver="lbfgs", max_iter=10_000, random_state=0,
                          backend=backend, n_threads=1)
    raised = False
    try:
        model.fit(X, y)
    except KeyboardInterrupt:
        raised = True
    returned = time.monotonic()
    finite = all(np.all(np.isfinite(a)) for a in model.coefs_ + model.intercepts_)
    # the loss it reports is the loss of the weights it holds
    net = model._net
    loss = net.loss(X, model._label_binarizer.transform(y).astype(float)) / len(X)
    penalty = 0.5 * model.alpha * sum(float(np.sum(W * W)) for W in model.coefs_) / len(X)
    _report(returned=returned, raised=raised, finite=finite, n_iter=model.n_iter_,
            loss_matches=bool(np.isclose(model.loss_, loss + penalty, rtol=1e-9)))


def sigterm(backend):
    """A long fit: the parent sends SIGTERM, which must end this process."""
    from fastmlp import MLPClassifier

    X, y = _data()
    MLPClassifier((8,), max_iter=1, backend=backend).fit(X[:512], y[:512])
    print("ready", flush=True)
    MLPClassifier((512,), max_iter=500, backend=backend).fit(X, y)
    _report(finished=True)


def fork(backend, how):
    """A fit in a child forked after this process trained with a thread team: it completes,
    with the weights of the same fit on one thread."""
    import multiprocessing

    from fastmlp import MLPClassifier

    X, y = _data(4000, np.float64)
    params = dict(hidden_layer_sizes=(64,), batch_size=512, max_iter=5, random_state=0,
                  backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(**params, n_threads=2).fit(X, y)  # the parent's team
        serial = MLPClassifier(**params, n_threads=1).fit(X, y).coefs_[0]
    print("ready", flush=True)
    if how == "gridsearch":
        from joblib import parallel_backend
        from sklearn.model_selection import GridSearchCV

        grid = {"alpha": [1e-4, 1e-2]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with parallel_backend("multiprocessing"):
                forked = GridSearchCV(MLPClassifier(**params), grid, cv=2, n_jobs=2).fit(X, y)
            here = GridSearchCV(MLPClassifier(**params, n_threads=1), grid, cv=2).fit(X, y)
        same = np.array_equal(forked.cv_results_["mean_test_score"],
                              here.cv_results_["mean_test_score"])
        _report(completed=True, same=bool(same))
        return
    if how == "os.fork":
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                coefs = MLPClassifier(**params).fit(X, y).coefs_[0]
            os.write(write, b"1" if np.array_equal(coefs, serial) else b"0")
            os._exit(0)
        os.close(write)
        same = os.read(read, 1) == b"1"
        os.waitpid(pid, 0)
    else:
        context = multiprocessing.get_context("fork")
        with context.Pool(1) as pool:
            coefs = pool.apply(_fit_coefs, (params, X, y))
        same = np.array_equal(coefs, serial)
    _report(completed=True, same=bool(same))


def _fit_coefs(params, X, y):
    from fastmlp import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(**params).fit(X, y).coefs_[0]


def threads(backend):
    """n_threads 0, -1, 1000: a clear error, every CPU, capped at the CPUs — never an exit."""
    from fastmlp import MLPClassifier
    from fastmlp._threads import cpu_count

    X, y = _data(4000, np.float64)
    params = dict(hidden_layer_sizes=(32,), batch_size=512, max_iter=3, random_state=0,
                  backend=backend)
    print("ready", flush=True)
    outcome = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            MLPClassifier(**params, n_threads=0).fit(X, y)
            outcome["0"] = "fitted"
        except ValueError as exc:
            outcome["0"] = f"{type(exc).__name__}: {exc}"
        every = MLPClassifier(**params, n_threads=cpu_count()).fit(X, y).coefs_[0]
        for n in (-1, 1000):
            outcome[str(n)] = bool(np.array_equal(
                MLPClassifier(**params, n_threads=n).fit(X, y).coefs_[0], every))
        outcome["-1000"] = bool(np.array_equal(
            MLPClassifier(**params, n_threads=-1000).fit(X, y).coefs_[0],
            MLPClassifier(**params, n_threads=1).fit(X, y).coefs_[0]))
    _report(**outcome)


def load_fifo(path):
    """fastmlp.load on a FIFO: a clear error, not a read that never returns."""
    import fastmlp

    print("ready", flush=True)
    try:
        fastmlp.load(path)
        _report(error=None)
    except ValueError as exc:
        _report(error=str(exc))


def predict_sigint(backend):
    """A prediction of many seconds that the parent interrupts: KeyboardInterrupt, and how
    soon after the signal it came (a chunk's time, not the whole prediction's)."""
    from fastmlp import MLP

    net = MLP([64, 2048, 2048, 10], dtype=np.float32, backend=backend, random_state=0)
    X = np.random.default_rng(0).standard_normal((200_000, 64), dtype=np.float32)
    net.forward(X[:300])  # compiled (numba), thread pools started
    print("ready", flush=True)
    try:
        net.forward(X)
        _report(interrupted=False)
    except KeyboardInterrupt:
        _report(interrupted=True, returned=time.monotonic())


def predict_memory(backend):
    """Peak memory of a 1.5M-row prediction beyond its input: the output and a chunk's
    buffers, not every row's hidden activations (ru_maxrss, before and after)."""
    import resource

    from fastmlp import MLP

    net = MLP([64, 100, 10], dtype=np.float32, backend=backend, random_state=0)
    X = np.random.default_rng(0).standard_normal((1_500_000, 64), dtype=np.float32)
    net.forward(X[:5000])  # compiled, warmed up
    print("ready", flush=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = net.forward(X)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _report(growth=after - before, output=out.nbytes, input=X.nbytes)


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
