"""Ctrl-C, SIGTERM, fork and thread counts: a fit stops promptly with a consistent state,
forked children train, and no thread count ends the process.

The signal, fork and thread-count cases run in child processes (tests/_child_fits.py) with
a timeout, so a hang, a signal or an exit is a failure here, not a stuck suite. The stop
flag and the time budget are also tested on every backend's train_epochs directly, and the
trainer's handling of an interrupted call without any signal.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, MLPClassifier, MLPRegressor, interrupts, optim, training
from fastmlp._threads import cpu_count
from fastmlp.model import TrainingJob

from helpers import COMPILED, FULL_PRODUCTS, problem

CHILD = Path(__file__).parent / "_child_fits.py"
#: How soon after SIGINT a fit must have returned.
PROMPT = 1.0


class Child:
    """A scenario of _child_fits.py in its own process: started, waited for until "ready"."""

    def __init__(self, *args, timeout=240):
        self.timeout = timeout
        # a session of its own: a failure kills the scenario and every process it forked
        self.process = subprocess.Popen([sys.executable, str(CHILD), *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, start_new_session=True)
        self.ready = self._line()
        assert self.ready == "ready", self._failure("never got ready")

    def _line(self):
        result = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()))
        reader.start()
        reader.join(self.timeout)
        if reader.is_alive():
            pytest.fail(self._failure(f"no output within {self.timeout} s"))
        return result[0].strip()

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def _failure(self, what):
        self.kill()
        return f"child {what}; stderr:\n{self.process.stderr.read()[-3000:]}"

    def signal(self, signum):
        self.process.send_signal(signum)
        return time.monotonic()

    def result(self):
        line = self._line()
        try:
            self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(self._failure(f"did not exit within {self.timeout} s"))
        assert self.process.returncode == 0, self._failure(f"exited {self.process.returncode}")
        return json.loads(line)


# -- in child processes ------------------------------------------------------------------------
# (16384,): an epoch takes several seconds, so only the flag read after each minibatch can
# stop it in time (the calls' time budget is checked between epochs)
@pytest.mark.process
@pytest.mark.parametrize("hidden", ["64", "128,128", "512", "16384"])
@pytest.mark.parametrize("backend", COMPILED)
def test_sigint_returns_within_a_second_with_a_consistent_state(backend, hidden):
    """SIGINT 2 s into a fit on 200k rows: fit returns within PROMPT with scikit-learn's
    warning; n_iter_, t_, loss_curve_, the plateau counters and the weights are those of the
    same fit told to stop after n_iter_ epochs (or the starting weights, if interrupted in
    its first), and a warm start continues as that one."""
    child = Child("sigint", backend, hidden)
    time.sleep(2.0)
    sent = child.signal(signal.SIGINT)
    out = child.result()
    assert out["returned"] - sent < PROMPT, f"returned {out['returned'] - sent:.2f} s after"
    assert out["warnings"] == ["Training interrupted by user."]
    state = out["state"]
    assert len(state["curve"]) == state["n_iter"] and state["t"] == state["n_iter"] * 200_000
    assert out["matches"], "the interrupted model is not the model of its n_iter_ epochs"
    if state["n_iter"]:  # (a slow machine may not finish the first epoch in 2 s)
        assert out["continues"], "a warm start does not continue as from that epoch"


@pytest.mark.process
@pytest.mark.parametrize("backend", COMPILED)
def test_sigint_during_a_long_prediction_returns_within_a_second(backend):
    """A prediction runs a compiled call per chunk of rows: Ctrl-C 1 s into one of many
    seconds raises KeyboardInterrupt a chunk later."""
    child = Child("predict_sigint", backend)
    time.sleep(1.0)
    sent = child.signal(signal.SIGINT)
    out = child.result()
    assert out["interrupted"], "the prediction ran to its end"
    assert out["returned"] - sent < PROMPT, f"returned {out['returned'] - sent:.2f} s after"


@pytest.mark.process
@pytest.mark.parametrize("backend", COMPILED)
def test_a_large_prediction_holds_its_output_and_a_chunk_not_every_row(backend):
    """1.5M rows through 64-100-10: the hidden layer's 600 MB are never held at once; the
    peak beyond the input is the output and at most 64 MB."""
    out = Child("predict_memory", backend).result()
    assert out["growth"] <= out["output"] + (64 << 20), out


@pytest.mark.process
@pytest.mark.parametrize("backend", COMPILED)
def test_sigint_during_lbfgs_raises_keyboard_interrupt_at_an_accepted_iterate(backend):
    """scikit-learn lets Ctrl-C end an lbfgs fit with KeyboardInterrupt; the model holds the
    last accepted iterate and the loss it reports is that iterate's."""
    child = Child("lbfgs", backend)
    time.sleep(2.0)
    sent = child.signal(signal.SIGINT)
    out = child.result()
    assert out["raised"]
    assert out["returned"] - sent < PROMPT
    assert out["finite"] and out["loss_matches"]


@pytest.mark.process
@pytest.mark.parametrize("backend", COMPILED)
def test_sigterm_ends_the_process_during_a_fit(backend):
    child = Child("sigterm", backend)
    time.sleep(2.0)
    sent = child.signal(signal.SIGTERM)
    try:
        child.process.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("SIGTERM did not end the process within 5 s")
    assert time.monotonic() - sent < PROMPT + 0.5
    assert child.process.returncode == -signal.SIGTERM


@pytest.mark.process
@pytest.mark.skipif(cpu_count() < 2, reason="a thread team needs two CPUs")
@pytest.mark.parametrize("how", ["os.fork", "multiprocessing", "gridsearch"])
@pytest.mark.parametrize("backend", COMPILED)
def test_a_child_forked_after_a_threaded_fit_trains(backend, how):
    """After the parent trained with two threads, a forked child's fit completes, with the
    weights of the same fit on one thread (GridSearchCV under joblib's multiprocessing
    backend: the same scores as a serial search with n_threads=1)."""
    out = Child("fork", backend, how, timeout=120).result()
    assert out == {"completed": True, "same": True}


@pytest.mark.process
@pytest.mark.parametrize("backend", COMPILED)
def test_thread_counts_never_end_the_process(backend):
    out = Child("threads", backend).result()
    assert out["0"].startswith("InvalidParameterError: The 'n_threads' parameter of "
                               "MLPClassifier must be None, an int in the range [1, inf) or "
                               "an int in the range (-inf, -1]")
    assert out["-1"] is True, "-1 is not every CPU"
    assert out["1000"] is True, "1000 is not capped at the CPUs"
    assert out["-1000"] is True, "a count below one CPU is not one"


@pytest.mark.process
def test_load_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "model.fastmlp"
    os.mkfifo(fifo)
    out = Child("load_fifo", str(fifo), timeout=30).result()
    assert out["error"] == f"{fifo} is not a regular file, so not a fastmlp model file"


@pytest.mark.process
def test_sigint_outside_a_fit_is_pythons(tmp_path):
    """The deferral is scoped: inside, SIGINT only raises the flag (KeyboardInterrupt comes
    from check(), or on leaving when not consumed); outside, Python's handler is back."""
    pytest.importorskip("fastmlp._sigint")
    code = """
import os, signal
from fastmlp import interrupts
seen = []
with interrupts.deferred() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    seen.append(stop.requested)
    try:
        stop.check()
    except KeyboardInterrupt:
        seen.append("check")
    seen.append(stop.requested)
try:
    with interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        seen.append("deferred")
except KeyboardInterrupt:
    seen.append("on leaving")
try:
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(10 ** 6):
        pass
except KeyboardInterrupt:
    seen.append("python")
print(seen)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert run.stdout.strip() == "[True, 'check', False, 'deferred', 'on leaving', 'python']", \
        run.stderr


# -- the stop flag and the time budget, on every backend's train_epochs ------------------------
def _network(backend, dtype=np.float64, sizes=(20, 64, 3), n_threads=None):
    return MLP(list(sizes), dtype=dtype, backend=backend, random_state=0, n_threads=n_threads)


def _call(net, X, Y, n_epochs, batch_size, stop=None, time_budget=None, guard=True):
    opt = optim.Optimizer("adam", 1e-3, 0.9, True, 1e-4, 0.9, 0.999, 1e-8)
    state = net.optimizer_state_for(opt)
    orders = np.random.default_rng(0).permutation(len(X))[None]  # the same every epoch
    rates = np.full(n_epochs, 1e-3)
    return net.backend.train_epochs(net.arch, net.theta, X, Y, None, orders, batch_size, opt,
                                    state, rates, guard, None, stop, time_budget), orders, state


def _replay(backend, dtype, X, Y, orders, n_epochs, batch_size, sizes=(20, 64, 3)):
    """θ, moments and t after running just n_epochs epochs on a fresh network."""
    net = _network(backend, dtype, sizes)
    opt = optim.Optimizer("adam", 1e-3, 0.9, True, 1e-4, 0.9, 0.999, 1e-8)
    state = net.optimizer_state_for(opt)
    net.backend.train_epochs(net.arch, net.theta, X, Y, None, orders, batch_size, opt, state,
                             np.full(n_epochs, 1e-3), True, None)
    return net.theta, state


#: (dtype, batch size): each dtype's kernels and both paths — one thread (16) and a
#: minibatch split across threads (256) — crossed, or their product (FASTMLP_FULL_PRODUCTS).
FLAG_CASES = ([(d, b) for d in (np.float32, np.float64) for b in (16, 256)] if FULL_PRODUCTS
              else [(np.float32, 16), (np.float64, 256)])


@pytest.mark.parametrize("dtype, batch_size", FLAG_CASES,
                         ids=[f"{np.dtype(d).name}-{b}" for d, b in FLAG_CASES])
def test_a_raised_flag_ends_the_call_and_undoes_the_epoch_under_way(backend, dtype, batch_size):
    """The flag, raised from another thread while the call runs, ends it after a minibatch:
    event "interrupted"; θ, the moments and t are those after the epochs it reports."""
    X, Y = problem(0, 4096, (20, 64, 3), dtype=dtype)
    _call(_network(backend, dtype), X[:512], Y[:512], 1, batch_size)  # compiled (numba)
    net = _network(backend, dtype)
    stop = np.zeros(1, np.int64)
    # 1 s: an epoch (milliseconds idle) completes first even where a loaded machine stalls a
    # two-thread team at its barriers (the tests run with adaptive_threads off)
    timer = threading.Timer(1.0, stop.__setitem__, (0, 1))
    timer.start()
    try:
        # the budget only bounds a failure: a flag not read shows as "completed"
        (terms, event), orders, state = _call(net, X, Y, 100_000, batch_size, stop, 30.0)
    finally:
        timer.cancel()
    assert event == "interrupted"
    assert 0 < len(terms) < 100_000
    theta, replayed = _replay(backend, dtype, X, Y, orders, len(terms), batch_size)
    np.testing.assert_array_equal(net.theta, theta)
    np.testing.assert_array_equal(state.first, replayed.first)
    np.testing.assert_array_equal(state.second, replayed.second)
    assert state.t == replayed.t == len(terms) * -(-4096 // batch_size)


def test_a_flag_raised_before_the_call_runs_one_minibatch_and_undoes_it(backend):
    X, Y = problem(1, 300, (20, 64, 3))
    net = _network(backend)
    before = net.theta.copy()
    (terms, event), _, state = _call(net, X, Y, 5, 32, np.ones(1, np.int64))
    assert (event, len(terms), state.t) == ("interrupted", 0, 0)
    np.testing.assert_array_equal(net.theta, before)
    assert not state.first.any() and not state.second.any()


def test_without_the_guard_an_interrupted_epoch_stays_as_far_as_it_got(backend):
    """Documented: unguarded, nothing is kept to undo it with; t counts completed epochs."""
    X, Y = problem(1, 300, (20, 64, 3))
    net = _network(backend)
    before = net.theta.copy()
    (terms, event), _, state = _call(net, X, Y, 5, 32, np.ones(1, np.int64), guard=False)
    assert (event, len(terms), state.t) == ("interrupted", 0, 0)
    assert not np.array_equal(net.theta, before)


def test_the_time_budget_ends_the_call_after_an_epoch(backend):
    """No epoch starts after time_budget seconds: "completed" with the epochs that ran,
    exactly those epochs' result."""
    X, Y = problem(2, 2048, (20, 64, 3))
    _call(_network(backend), X, Y, 1, 64)  # compiled (numba)
    net = _network(backend)
    started = time.perf_counter()
    (terms, event), orders, state = _call(net, X, Y, 100_000, 64, time_budget=0.2)
    elapsed = time.perf_counter() - started
    assert event == "completed" and 0 < len(terms) < 100_000
    assert elapsed < 30  # far from 100 000 epochs
    theta, replayed = _replay(backend, np.float64, X, Y, orders, len(terms), 64)
    np.testing.assert_array_equal(net.theta, theta)
    assert state.t == replayed.t


@pytest.mark.parametrize("bad", [np.zeros(1, np.int32), np.zeros(2, np.int64),
                                 np.zeros((1, 1), np.int64), [0]])
def test_a_bad_stop_flag_is_refused(bad):
    X, Y = problem(3, 50, (20, 64, 3))
    with pytest.raises(ValueError, match="stop must be None or a writable int64 array"):
        _call(_network("numpy"), X, Y, 1, 10, bad)


@pytest.mark.parametrize("budget", [0, -1.0, float("nan"), True])
def test_a_bad_time_budget_is_refused(budget):
    X, Y = problem(3, 50, (20, 64, 3))
    with pytest.raises(ValueError, match="time_budget must be None or seconds > 0"):
        _call(_network("numpy"), X, Y, 1, 10, time_budget=budget)


# -- the trainer --------------------------------------------------------------------------------
def _digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def _interrupt_on_call(monkeypatch, call_number):
    """Make a fit's training job see the stop flag raised on its call_number-th call (as
    Ctrl-C during that call would: the backend then stops after one minibatch)."""
    original, calls = TrainingJob.run, []

    def run(self, *args, **kwargs):
        calls.append(len(args[1]))  # the epochs asked for
        if len(calls) == call_number:
            kwargs["stop"][0] = 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TrainingJob, "run", run)
    return calls


def _fit_params(backend, **extra):
    return dict(hidden_layer_sizes=(32,), random_state=0, backend=backend, max_iter=40,
                **extra)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_an_interrupted_fit_is_the_fit_of_its_completed_epochs(monkeypatch, backend,
                                                               early_stopping):
    X, y = _digits()
    monkeypatch.setattr(training, "MAX_CHUNK_EPOCHS", 4)
    params = _fit_params(backend, early_stopping=early_stopping)
    calls = _interrupt_on_call(monkeypatch, 3)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        model = MLPClassifier(**params).fit(X, y)
    monkeypatch.undo()
    k = model.n_iter_
    assert 0 < k < 40 and len(calls) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = MLPClassifier(**{**params, "max_iter": k}).fit(X, y)
        for m in (model, reference):
            m.set_params(warm_start=True, max_iter=3).fit(X, y)
    assert model.n_iter_ == reference.n_iter_ == 3  # this call's epochs, as scikit-learn's
    assert len(model.loss_curve_) == k + 3
    assert model.loss_curve_ == reference.loss_curve_ and model.t_ == reference.t_
    for a, b in zip(model.coefs_ + model.intercepts_, reference.coefs_ + reference.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_an_interrupted_partial_fit_leaves_the_model_as_it_was(monkeypatch, backend):
    X, y = _digits()
    model = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, backend=backend)
    model.partial_fit(X, y, classes=np.unique(y))
    before = [a.copy() for a in model.coefs_], model.n_iter_, model.t_, list(model.loss_curve_)
    _interrupt_on_call(monkeypatch, 1)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        model.partial_fit(X, y)
    assert model.n_iter_ == 0  # this call completed no epoch
    assert (model.t_, model.loss_curve_) == before[2:]
    for a, b in zip(model.coefs_, before[0]):
        np.testing.assert_array_equal(a, b)


def test_mlp_train_epochs_raises_keyboard_interrupt_after_keeping_its_epochs(monkeypatch,
                                                                             backend):
    """Ctrl-C in MLP.train_epochs (the flag raised from a timer thread here): the epochs that
    completed are kept (last_epochs_terms), the one under way undone, KeyboardInterrupt
    raised. One thread and a 1 s timer: at least one epoch (milliseconds) completes before the
    flag even on a loaded machine, where a two-thread team's barriers could stall for longer
    than a shorter timer (the tests run with adaptive_threads off)."""
    X, Y = problem(4, 4096, (20, 64, 3))
    net = _network(backend, n_threads=1)
    net.train_epochs(X[:64], Y[:64], [1e-3], 64, "adam")  # compiled (numba) before the timer
    net = _network(backend, n_threads=1)

    @contextlib.contextmanager
    def armed():  # a deferral whose flag a timer raises, as Ctrl-C would
        deferral = interrupts.Deferral(np.zeros(1, np.int64))
        timer = threading.Timer(1.0, deferral.flag.__setitem__, (0, 1))
        timer.start()
        try:
            yield deferral
        finally:
            timer.cancel()

    monkeypatch.setattr(interrupts, "deferred", armed)
    with pytest.raises(KeyboardInterrupt):
        net.train_epochs(X, Y, np.full(100_000, 1e-3), 64, "adam")
    monkeypatch.undo()
    k = len(net.last_epochs_terms)
    assert 0 < k < 100_000
    fresh = _network(backend, n_threads=1)
    fresh.train_epochs(X, Y, np.full(k, 1e-3), 64, "adam")
    np.testing.assert_array_equal(net.theta, fresh.theta)


def test_calls_are_sized_from_the_measured_pace(monkeypatch):
    """The first call runs one epoch; later ones as many as take CALL_SECONDS at the last
    call's pace, at most MAX_CHUNK_EPOCHS; the kernels' budget (CALL_BUDGET) is passed."""
    X, y = _digits()
    seen, ran = [], []
    original = TrainingJob.run

    def run(self, *args, **kwargs):
        terms, event = original(self, *args, **kwargs)
        seen.append((len(args[1]), kwargs["time_budget"]))
        ran.append(len(terms))  # fewer than asked when the budget ends a call (a busy machine)
        return terms, event

    monkeypatch.setattr(TrainingJob, "run", run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=150,
                      n_iter_no_change=1000).fit(X, y)
    assert seen[0] == (1, training.CALL_BUDGET)
    assert all(budget == training.CALL_BUDGET for _, budget in seen)
    assert 1 < max(k for k, _ in seen) <= training.MAX_CHUNK_EPOCHS  # digits: ~1 ms an epoch
    assert sum(ran) == 150 and all(r <= k for r, (k, _) in zip(ran, seen))


def test_epochs_per_call_follows_the_pace():
    epochs = training._Epochs.__new__(training._Epochs)
    epochs.seconds_per_epoch = None
    assert epochs._epochs_per_call() == 1
    epochs.seconds_per_epoch = training.CALL_SECONDS / 10
    assert epochs._epochs_per_call() == 10
    epochs.seconds_per_epoch = 5 * training.CALL_SECONDS
    assert epochs._epochs_per_call() == 1


def test_a_fit_is_the_same_however_its_calls_are_sized(monkeypatch, backend):
    """One epoch per call, or calls that the kernels' time budget ends after every epoch
    (the draws of the epochs not run handed back): the same weights as the default."""
    X, y = _digits()
    params = dict(hidden_layer_sizes=(16,), random_state=0, backend=backend, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = MLPClassifier(**params).fit(X, y)
        monkeypatch.setattr(training, "CALL_SECONDS", 1e-12)
        one_each = MLPClassifier(**params).fit(X, y)
        monkeypatch.setattr(training, "CALL_SECONDS", 1e6)
        monkeypatch.setattr(training, "CALL_BUDGET", 1e-9)
        budget_ended = MLPClassifier(**params).fit(X, y)
    for model in (one_each, budget_ended):
        assert model.loss_curve_ == default.loss_curve_
        for a, b in zip(model.coefs_, default.coefs_):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n_threads", [0, 1.5, True, "2"])
def test_n_threads_must_be_a_non_zero_integer(n_threads):
    X, y = _digits()
    with pytest.raises(ValueError, match="n_threads"):  # scikit-learn's wording; a bool: ours
        MLPRegressor(n_threads=n_threads, max_iter=1).fit(X[:50], y[:50])


@pytest.mark.process
@pytest.mark.parametrize("compare, partial", [(False, False), (True, False), (True, True)])
def test_ctrl_c_during_fastmlp_train_stops_it_and_keeps_the_saved_model(tmp_path, compare,
                                                                         partial):
    """`fastmlp train --save m` interrupted: exit status 130 within a second, the model file
    that was there untouched (with --save-partial: the partial model, said so), no
    scikit-learn comparison run after it."""
    target = tmp_path / "m.fastmlp"
    target.write_bytes(b"the previous model")
    command = [sys.executable, "-m", "fastmlp.cli", "train", "--hidden", "4096", "--quiet",
               "--save", str(target)] + ([] if compare else ["--no-compare"]) + (
                   ["--save-partial"] if partial else [])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        while "warm-up" not in process.stdout.readline():
            assert process.poll() is None, process.stderr.read()
        time.sleep(1.0)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(30)
        took = time.monotonic() - sent
        err, out = process.stderr.read(), process.stdout.read()
    finally:
        os.killpg(process.pid, signal.SIGKILL) if process.poll() is None else None
    assert process.returncode == 130, err
    assert took < PROMPT + 0.5  # the interpreter's exit included
    assert "interrupted by Ctrl-C after" in err and "Traceback" not in err
    assert "sklearn" not in out + err
    if not partial:
        assert "nothing saved" in err
        assert target.read_bytes() == b"the previous model"
        return
    assert f"the partial model saved to {target}" in err
    epochs = int(err.split("interrupted by Ctrl-C after ")[1].split()[0])
    assert fastmlp.load(target).n_iter_ == epochs
