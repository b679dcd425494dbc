"""Thread counts on a busy machine: _cpu_load's reading, the team a default fit runs, and
that the team never changes a split minibatch's weights."""
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import COMPILED, DTYPES, problem

import fastmlp
from fastmlp import MLP, _threads, _cpu_load
from fastmlp.backends import _layout

pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled backend installed")

SPLIT = [64, 128, 10]  # batch 128: a split minibatch (data-parallel) on two threads
WIDE = [64, 2048, 10]  # past CHUNK_MAX_WORK: one chunk, BLAS's own threads


def test_free_cpus_subtracts_this_process_from_the_machine():
    before = (10.0, 100.0, 5.0)
    # 1 s: the machine spent 1.6 CPU-seconds, 0.4 of them this process's
    assert _cpu_load.free_between(before, (11.0, 101.6, 5.4), 2) == pytest.approx(0.8)
    assert _cpu_load.free_between(before, (11.0, 100.0, 5.0), 2) == 2.0
    assert _cpu_load.free_between(before, (11.0, 104.0, 5.0), 2) == 0.0  # clipped
    assert _cpu_load.free_between(before, (12.0, 101.0, 6.0), 4) == 4.0  # all ours


@pytest.fixture
def busy_machine():
    """One CPU-bound process per CPU of ours, then _cpu_load's interval started afresh."""
    n = _threads.cpu_count()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(n)]
    try:
        time.sleep(0.3)  # the spinners are running
        _cpu_load.free_cpus(n)
        time.sleep(3 * _cpu_load.MIN_INTERVAL)
        yield n
    finally:
        for p in spinners:
            p.kill()
            p.wait()


@pytest.mark.process
@pytest.mark.skipif(_cpu_load.reading() is None, reason="no /proc/stat here")
def test_a_busy_machine_gets_a_team_of_one(busy_machine):
    assert _cpu_load.free_cpus(busy_machine) < 0.5
    assert _cpu_load.team_size(busy_machine, busy_machine) == 1
    with fastmlp.config_context(adaptive_threads=True):
        assert _threads.team_threads(busy_machine) == 1
        with fastmlp.config_context(adaptive_threads=False):
            assert _threads.team_threads(busy_machine) == busy_machine
        with _threads.thread_limit(busy_machine):  # n_threads set: as asked
            assert _threads.team_threads(busy_machine) == busy_machine


@pytest.fixture
def teams(monkeypatch):
    """Every compiled call's Control.threads, with _cpu_load reporting `free` CPUs."""
    seen = []
    real = _layout.Control

    def control(*args):
        made = real(*args)
        seen.append(made.threads)
        return made

    monkeypatch.setattr(_layout, "Control", control)
    monkeypatch.setattr(_threads, "cpu_count", lambda: 2)

    def with_free(free):
        monkeypatch.setattr(_cpu_load, "free_cpus", lambda n: free)
        seen.clear()
        return seen

    return with_free


def _train(backend, sizes, dtype, n_threads=None, epochs=2):
    X, Y = problem(3, 512, sizes, dtype=dtype)
    net = MLP(sizes, dtype=dtype, backend=backend, random_state=0, n_threads=n_threads)
    for epoch in range(epochs):
        net.train_epoch(X, Y, batch_size=128, optimizer="adam", learning_rate=1e-3,
                        shuffle=True, random_state=epoch)
    return net.theta.copy()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("backend", COMPILED)
def test_a_split_minibatch_gives_the_same_weights_on_any_team(backend, dtype, teams):
    with fastmlp.config_context(adaptive_threads=True):
        seen = teams(2.0)
        idle = _train(backend, SPLIT, dtype)
        assert seen == [2, 2]
        seen = teams(0.3)
        busy = _train(backend, SPLIT, dtype)
        assert seen == [1, 1]
    np.testing.assert_array_equal(idle, busy)
    np.testing.assert_array_equal(idle, _train(backend, SPLIT, dtype, n_threads=2))


@pytest.mark.parametrize("backend", COMPILED)
def test_the_team_follows_the_free_cpus_only_when_asked(backend, teams):
    seen = teams(0.3)
    with fastmlp.config_context(adaptive_threads=True):
        _train(backend, SPLIT, np.float64, n_threads=2, epochs=1)
        assert seen == [2]  # n_threads set: as asked, busy or not
        _train(backend, WIDE, np.float64, epochs=1)
        assert seen == [2, 1]  # unsplit: BLAS's threads follow the load
    with fastmlp.config_context(adaptive_threads=False):
        _train(backend, SPLIT, np.float64, epochs=1)
        assert seen == [2, 1, 2]


@pytest.mark.parametrize("backend", COMPILED)
def test_a_step_on_one_thread_does_not_measure_the_load(backend, monkeypatch):
    """An unsplit minibatch whose products BLAS keeps to one thread runs on one thread
    whatever the team: the call skips the /proc/stat reading (a large part of its cost)."""
    readings = []
    monkeypatch.setattr(_cpu_load, "free_cpus", lambda n: readings.append(n) or 0.3)
    monkeypatch.setattr(_threads, "cpu_count", lambda: 2)
    small = (64, 32, 10)
    X, Y = problem(3, 64, small, dtype=np.float64)
    net = MLP(small, backend=backend, random_state=0)
    with fastmlp.config_context(adaptive_threads=True):
        for batch_size in (1, 32):  # 32·64·32 = 65536 multiply-adds: one thread
            net.train_epoch(X, Y, batch_size=batch_size)
        assert readings == []
        wide = (64, 128, 10)  # 33·64·128 is past OpenBLAS's one-thread size
        net = MLP(wide, backend=backend, random_state=0)
        X, Y = problem(3, 66, wide, dtype=np.float64)
        net.train_epoch(X, Y, batch_size=33)
        assert readings == [2]


@pytest.mark.process
def test_adaptive_threads_is_a_setting():
    assert fastmlp.get_config()["adaptive_threads"] is False  # tests/conftest.py
    with pytest.raises(ValueError, match="adaptive_threads must be True or False"):
        fastmlp.set_config(adaptive_threads="yes")
    code = "import fastmlp; print(fastmlp.get_config()['adaptive_threads'])"
    for value, expected in (("0", "False"), ("off", "False"), ("1", "True")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**__import__("os").environ,
                                  "FASTMLP_ADAPTIVE_THREADS": value})
        assert out.stdout.strip() == expected, out.stderr
