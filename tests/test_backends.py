"""Every compiled backend against the reference, function by function and end to end.

Tolerances come from helpers.TOL (per dtype, stated once). Inputs come C-ordered,
Fortran-ordered, strided and read-only: a backend may copy them, never misread them.
"""
import numpy as np
import pytest
from helpers import COMBOS, COMPILED, FULL_PRODUCTS, PAIRS, problem, targets, tol

import fastmlp
from fastmlp import MLP
from fastmlp.activations import ACTIVATIONS, HIDDEN_ACTIVATIONS
from fastmlp.backends import reference
from fastmlp.optim import Optimizer

# Shapes on both sides of the small-loop / BLAS switch, with batch 1 and odd sizes; the last
# two past _layout.BLOCK_BYTES of output, so the forward GEMM, then δ_in's, runs in row blocks.
SHAPES = [(1, 7, 33), (7, 33, 129), (33, 1, 7), (129, 7, 33), (129, 257, 129), (300, 64, 70),
          (600, 9, 520), (600, 520, 9)]
LAYOUTS = ["C", "F", "strided", "readonly"]

pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled backend installed")


def crossing(activations, common):
    """(activation, shape, layout) cases: every layout × shape on the `common` activation and
    every activation × shape in C order — each path through a layer kernel (its regime by
    shape, its epilogue by activation, its input handling by layout) — or, with
    FASTMLP_FULL_PRODUCTS=1, their full product."""
    if FULL_PRODUCTS:
        return [(a, s, l) for a in activations for s in SHAPES for l in LAYOUTS]
    return ([(common, s, l) for s in SHAPES for l in LAYOUTS]
            + [(a, s, "C") for a in activations if a != common for s in SHAPES])


def case_id(case):
    activation, shape, layout = case
    return f"{activation}-{'x'.join(map(str, shape))}-{layout}"


@pytest.fixture
def kernels(compiled_backend):
    """A compiled backend's checked kernel functions (its module)."""
    return fastmlp.get_backend(compiled_backend)


def as_layout(a, layout):
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        wide = np.zeros((a.shape[0], 2 * a.shape[1]) if a.ndim == 2 else 2 * a.shape[0], a.dtype)
        view = wide[:, ::2] if a.ndim == 2 else wide[::2]
        view[...] = a
        return view
    if layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
    return a


@pytest.mark.parametrize("case", crossing(ACTIVATIONS, "relu"), ids=case_id)
def test_forward_layer(kernels, dtype, case):
    activation, shape, layout = case
    n, n_in, n_out = shape
    rng = np.random.default_rng(0)
    A = rng.normal(size=(n, n_in)).astype(dtype)
    W = (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    expected = reference.forward_layer(A, W, b, activation, np.empty((n, n_out), dtype), 0.1)
    out = np.full((n, n_out), np.nan, dtype)
    result = kernels.forward_layer(as_layout(A, layout), as_layout(W, layout),
                                   as_layout(b, layout), activation, out, 0.1)
    assert result is out
    np.testing.assert_allclose(out, expected, **tol(dtype))


@pytest.mark.parametrize("case", crossing(HIDDEN_ACTIVATIONS + (None,), "relu"), ids=case_id)
def test_backward_layer(kernels, dtype, case):
    activation_in, shape, layout = case
    n, n_in, n_out = shape
    rng = np.random.default_rng(1)
    A = rng.uniform(-1, 1, size=(n, n_in)).astype(dtype)
    if activation_in in ("logistic",):
        A = np.abs(A)
    delta = rng.normal(size=(n, n_out)).astype(dtype)
    W = rng.normal(size=(n_in, n_out)).astype(dtype)
    want_in = activation_in is not None

    def run(impl, A_, delta_, W_):
        gW = np.full((n_in, n_out), np.nan, dtype)
        gb = np.full(n_out, np.nan, dtype)
        d_in = np.full((n, n_in), np.nan, dtype) if want_in else None
        impl.backward_layer(A_, delta_, W_, gW, gb, d_in, activation_in, 0.1)
        return gW, gb, d_in

    expected = run(reference, A, delta, W)
    got = run(kernels, as_layout(A, layout), as_layout(delta, layout), as_layout(W, layout))
    scale = np.sqrt(n)  # sums over the batch grow like √n
    for e, g in zip(expected, got):
        if e is not None:
            np.testing.assert_allclose(g, e, **tol(dtype, scale * max(1, np.abs(e).max())))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("n", [1, 7, 129])
@pytest.mark.parametrize("output,loss", PAIRS)
def test_output_delta(kernels, dtype, output, loss, n, weighted):
    rng = np.random.default_rng(2)
    Z = rng.normal(0, 3, size=(n, 5)).astype(dtype)
    from fastmlp.activations import activate

    A = activate(Z, output, 0.1)
    Y = targets(rng, n, 5, output, loss, dtype)
    w = rng.uniform(0.1, 2, n).astype(dtype) if weighted else None
    d_ref, d = np.empty_like(A), np.full_like(A, np.nan)
    expected = reference.output_delta(A, Y, output, loss, d_ref, w, 0.1)
    got = kernels.output_delta(as_layout(A, "F"), Y, output, loss, d, w, 0.1)
    assert got == pytest.approx(expected, rel=tol(dtype)["rtol"] * 10, abs=tol(dtype)["atol"])
    np.testing.assert_allclose(d, d_ref, **tol(dtype))


def pair_of_nets(backend, sizes, hidden, output, loss, dtype, seed=0):
    nets = [MLP(sizes, hidden, output, loss, leaky_slope=0.1, dtype=dtype, backend=b,
                random_state=seed) for b in ("numpy", backend)]
    return nets


@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_model_forward_and_gradients(kernels, dtype, hidden, output, loss):
    sizes = [7, 33, 5] if hidden in ("relu", "tanh") else [7, 9, 8, 6, 5]  # 1 and 3 hidden
    ref, net = pair_of_nets(kernels.name, sizes, hidden, output, loss, dtype)
    X, Y = problem(3, 33, sizes, output, loss, dtype)
    np.testing.assert_allclose(net.forward(X), ref.forward(X), **tol(dtype))
    l_ref, gc_ref, gi_ref = ref.gradients(X, Y)
    l, gc, gi = net.gradients(X, Y)
    assert l == pytest.approx(l_ref, rel=tol(dtype)["rtol"] * 10)
    for g, e in zip(gc + gi, gc_ref + gi_ref):
        np.testing.assert_allclose(g, e, **tol(dtype, 10 * max(1, np.abs(e).max())))


@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_summed_gradient_over_rows_read_in_place(kernels, dtype, hidden, output, loss):
    """A data-parallel worker's sums (fastmlp.distributed): rows picked by index, repeats
    and batch 1 included, weighted and not, dense and sparse, every input layout; θ and X
    untouched."""
    import scipy.sparse

    sizes = [7, 33, 5] if hidden in ("relu", "tanh") else [7, 9, 8, 6, 5]
    net = MLP(sizes, hidden, output, loss, leaky_slope=0.1, dtype=dtype, backend="numpy",
              random_state=0)
    X, Y = problem(4, 40, sizes, output, loss, dtype)
    X[X < 0] = 0  # zeros for the sparse case
    weights = np.random.default_rng(1).random(40).astype(dtype)
    theta = net.theta.copy()
    scratch = {}  # one scratch through every call: its buffers grow, shrink never
    for k, rows in enumerate([np.array([3]), np.array([5, 5, 0, 39]), np.arange(40)[::-3]]):
        for sw, layout in [(None, LAYOUTS[k % 4]), (weights, "readonly"), (weights, "F")]:
            args = (as_layout(X, layout), as_layout(Y, layout),
                    None if sw is None else as_layout(sw, layout))
            for x in (args[0], scipy.sparse.csr_matrix(X)):
                grad_ref = np.empty_like(theta)
                expected = reference.summed_gradient(net.arch, theta, X[rows], Y[rows],
                                                     None if sw is None else sw[rows], grad_ref)
                grad = np.full_like(theta, np.nan)
                loss_sum = kernels.summed_gradient(net.arch, theta, x, *args[1:], rows, grad,
                                                   scratch)
                assert loss_sum == pytest.approx(expected, rel=10 * tol(dtype)["rtol"])
                np.testing.assert_allclose(grad, grad_ref,
                                           **tol(dtype, 10 * max(1, np.abs(grad_ref).max())))
    np.testing.assert_array_equal(net.theta, theta)


def test_summed_gradient_rejects_bad_rows_before_the_kernel(kernels):
    net = MLP([3, 4, 2], backend="numpy", random_state=0)
    X, Y, grad = np.ones((5, 3)), np.eye(2)[[0, 1, 0, 1, 0]], np.empty(net.arch.n_params)
    for rows, error, match in [(np.array([0, 5]), ValueError, "index X's 5 rows"),
                               (np.array([-1]), ValueError, "index X's 5 rows"),
                               (np.array([], int), ValueError, "non-empty"),
                               (np.array([0.0]), TypeError, "integer row indices")]:
        with pytest.raises(error, match=match):
            kernels.summed_gradient(net.arch, net.theta, X, Y, None, rows, grad)
    with pytest.raises(ValueError, match="grad shares memory with theta"):
        kernels.summed_gradient(net.arch, net.theta, X, Y, None, [0], net.theta)


TRAINING = [
    dict(optimizer=Optimizer("sgd", 0.05)),
    dict(optimizer=Optimizer("sgd", 0.05, l2=1e-2)),  # cython: the update fused (_fuses)
    dict(optimizer=Optimizer("sgd", 0.05, momentum=0.9, l2=1e-3)),
    dict(optimizer=Optimizer("sgd", 0.05, momentum=0.9, nesterov=True)),
    dict(optimizer=Optimizer("adam", 0.01)),
    dict(optimizer=Optimizer("adam", 0.01, l2=1e-2)),
    dict(optimizer=Optimizer("adamw", 0.01, weight_decay=0.1)),
    dict(optimizer=Optimizer("adamw", 0.01, l2=1e-2, weight_decay=0.5)),
]
TRAINING_IDS = ["sgd", "sgd-l2", "momentum-l2", "nesterov", "adam", "adam-l2", "adamw",
                "adamw-l2"]


@pytest.mark.parametrize("opt", TRAINING, ids=TRAINING_IDS)
@pytest.mark.parametrize("hidden,output,loss", [("relu", "softmax", "cross_entropy"),
                                                ("tanh", "logistic", "binary_cross_entropy"),
                                                ("logistic", "identity", "squared_error"),
                                                ("leaky_relu", "logistic", "squared_error")])
def test_training_follows_the_reference_trajectory(kernels, dtype, hidden, output, loss, opt):
    sizes = [6, 17, 9, 4]
    ref, net = pair_of_nets(kernels.name, sizes, hidden, output, loss, dtype)
    X, Y = problem(4, 101, sizes, output, loss, dtype)
    w = np.random.default_rng(5).uniform(0.2, 2, 101).astype(dtype)
    for epoch in range(4):
        sample_weight = w if epoch % 2 else None
        kw = dict(batch_size=16, shuffle=True, random_state=epoch, sample_weight=sample_weight,
                  **opt)
        l_ref, l = ref.train_epoch(X, Y, **kw), net.train_epoch(X, Y, **kw)
        assert l == pytest.approx(l_ref, rel=50 * tol(dtype)["rtol"])
        np.testing.assert_allclose(net.theta, ref.theta, rtol=50 * tol(dtype)["rtol"],
                                   atol=50 * tol(dtype)["atol"])
    assert net.optimizer_state.t == ref.optimizer_state.t


@pytest.mark.parametrize("batch_size", [1, 7, 128, 1000])
def test_large_and_uneven_batches_follow_the_reference(kernels, batch_size):
    sizes = [40, 300, 20]  # the hidden layer crosses the BLAS switch at batch 128
    ref, net = pair_of_nets(kernels.name, sizes, "relu", "softmax", "cross_entropy", np.float64)
    X, Y = problem(6, 301, sizes)
    for epoch in range(2):
        kw = dict(batch_size=batch_size, optimizer="adam", learning_rate=1e-3)
        assert net.train_epoch(X, Y, **kw) == pytest.approx(ref.train_epoch(X, Y, **kw))
    np.testing.assert_allclose(net.theta, ref.theta, rtol=1e-9, atol=1e-12)


def test_same_seed_same_threads_is_bitwise_identical(kernels, dtype):
    sizes = [64, 256, 128, 10]
    X, Y = problem(7, 600, sizes, dtype=dtype)
    thetas = {}
    for n_threads in (1, 2, 2, 3, 3):  # 3: more gradient buffers than the fused pair
        net = MLP(sizes, dtype=dtype, backend=kernels.name, random_state=0, n_threads=n_threads)
        for epoch in range(2):
            net.train_epoch(X, Y, batch_size=128, optimizer="adam", learning_rate=1e-3,
                            shuffle=True, random_state=epoch)
        thetas.setdefault(n_threads, []).append(net.theta.copy())
    for n_threads in (2, 3):
        np.testing.assert_array_equal(thetas[n_threads][0], thetas[n_threads][1])
        np.testing.assert_allclose(thetas[1][0], thetas[n_threads][0], **tol(dtype, 10))


def test_wrong_shapes_and_dtypes_are_rejected_before_the_kernel(kernels):
    A, W, b = np.ones((4, 3)), np.ones((3, 2)), np.ones(2)
    with pytest.raises(ValueError, match="A_in has shape"):
        kernels.forward_layer(np.ones((4, 5)), W, b, "relu", np.empty((4, 2)))
    with pytest.raises(ValueError, match="out has shape"):
        kernels.forward_layer(A, W, b, "relu", np.empty((4, 3)))
    with pytest.raises(TypeError, match="dtype mismatch"):
        kernels.forward_layer(A.astype(np.float32), W, b, "relu", np.empty((4, 2)))
    with pytest.raises(ValueError, match="read-only"):
        out = np.empty((4, 2))
        out.flags.writeable = False
        kernels.forward_layer(A, W, b, "relu", out)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.forward_layer(A, W, b, "relu", np.empty((2, 4)).T)
    with pytest.raises(ValueError, match="grad_W has shape"):
        kernels.backward_layer(A, np.ones((4, 2)), W, np.empty((2, 3)), np.empty(2))
    with pytest.raises(ValueError, match="activation_in is required"):
        kernels.backward_layer(A, np.ones((4, 2)), W, np.empty((3, 2)), np.empty(2),
                               np.empty((4, 3)))
    with pytest.raises(ValueError, match="Y has shape"):
        kernels.output_delta(np.ones((4, 2)) / 2, np.ones((3, 2)), "softmax", "cross_entropy",
                             np.empty((4, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.forward_layer(A.astype(int), W.astype(int), b.astype(int), "relu",
                              np.empty((4, 2), int))


ALLOCATIONS_PROBE = r"""
import numpy as np
from numba.core.runtime import rtsys
from fastmlp import MLP
net = MLP([20, 40, 30, 5], dtype=np.float32, backend="numba", random_state=0)
rng = np.random.default_rng(0)
X = rng.normal(size=(1000, 20)).astype(np.float32)
Y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 1000)]
counts = []
for rows in (40, 1000):  # 4 and 100 minibatches of 10
    net.train_epoch(X[:rows], Y[:rows], batch_size=10, optimizer="adam")  # compile, workspace
    before = rtsys.get_allocation_stats().alloc
    net.train_epoch(X[:rows], Y[:rows], batch_size=10, optimizer="adam")
    counts.append(rtsys.get_allocation_stats().alloc - before)
print(counts[0], counts[1])
"""


@pytest.mark.process
@pytest.mark.skipif("numba" not in COMPILED, reason="numba backend not installed")
def test_numba_epoch_allocates_nothing_per_minibatch():
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_NRT_STATS="1")
    out = subprocess.run([sys.executable, "-c", ALLOCATIONS_PROBE], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    few, many = int(out[-2]), int(out[-1])
    assert many == few, f"{few} allocations for 4 minibatches but {many} for 100"


@pytest.mark.skipif(not {"numba", "cython"} <= set(COMPILED), reason="needs both backends")
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_numba_and_cython_train_alike(dtype, optimizer):
    sizes = [20, 70, 30, 6]
    X, Y = problem(8, 500, sizes, dtype=dtype)
    nets = [MLP(sizes, "tanh", dtype=dtype, backend=b, random_state=0) for b in ("numba", "cython")]
    for epoch in range(5):
        kw = dict(batch_size=100, optimizer=Optimizer(optimizer, 0.01, momentum=0.9, l2=1e-3),
                  order=np.random.default_rng(epoch).permutation(500))
        losses = [net.train_epoch(X, Y, **kw) for net in nets]
        assert losses[1] == pytest.approx(losses[0], rel=50 * tol(dtype)["rtol"])
    np.testing.assert_allclose(nets[1].theta, nets[0].theta, rtol=50 * tol(dtype)["rtol"],
                               atol=50 * tol(dtype)["atol"])


CRASH_PROBE = r"""
import sys
import numpy as np, fastmlp


def cases(kernels):
    A, W, b = np.ones((4, 3)), np.ones((3, 2)), np.ones(2)
    return {
        "short A": lambda: kernels.forward_layer(np.ones((4, 1)), W, b, "relu",
                                                 np.empty((4, 2))),
        "short out": lambda: kernels.forward_layer(A, W, b, "relu", np.empty((1, 2))),
        "float32 W": lambda: kernels.forward_layer(A, W.astype(np.float32), b, "relu",
                                                   np.empty((4, 2))),
        "1-d A": lambda: kernels.forward_layer(np.ones(12), W, b, "relu", np.empty((4, 2))),
        "list A": lambda: kernels.forward_layer([[1.0] * 3] * 4, W, b, "relu",
                                                np.empty((4, 2))),
        "short bias": lambda: kernels.forward_layer(A, W, np.ones(1), "relu", np.empty((4, 2))),
        "bad activation": lambda: kernels.forward_layer(A, W, b, "gelu", np.empty((4, 2))),
        "short grad_b": lambda: kernels.backward_layer(A, np.ones((4, 2)), W, np.empty((3, 2)),
                                                       np.empty(1)),
        "short delta_in": lambda: kernels.backward_layer(A, np.ones((4, 2)), W,
                                                         np.empty((3, 2)), np.empty(2),
                                                         np.empty((2, 3)), "relu"),
        "short Y": lambda: kernels.output_delta(np.ones((4, 2)) / 2, np.ones((9, 2)), "softmax",
                                                "cross_entropy", np.empty((4, 2))),
        "short weights": lambda: kernels.output_delta(np.ones((4, 2)) / 2, np.ones((4, 2)),
                                                      "softmax", "cross_entropy",
                                                      np.empty((4, 2)), np.ones(2)),
    }


for backend in sys.argv[1:]:
    for name, call in cases(fastmlp.get_backend(backend)).items():
        print("case", backend, name, flush=True)  # the last printed is a crash's culprit
        try:
            call()
        except (ValueError, TypeError) as exc:
            assert str(exc), name
            print("ok", backend, name, "->", type(exc).__name__, exc)
        else:
            raise SystemExit(f"{backend} {name}: no error")
print("all rejected")
"""


@pytest.mark.process
def test_bad_kernel_arguments_raise_in_a_subprocess():
    """A wrong shape or dtype must raise before compiled code; a crash would kill the child
    (one child runs the table for every compiled backend)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", CRASH_PROBE, *COMPILED],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("all rejected")


# -- train_epochs: several epochs per call, the plateau rule and the guard inside ------------
def _orders(n, n_epochs, seed):
    rng = np.random.default_rng(seed)
    return np.array([rng.permutation(n) for _ in range(n_epochs)])


@pytest.mark.parametrize("opt", TRAINING, ids=TRAINING_IDS)
def test_train_epochs_follows_the_reference(kernels, dtype, opt):
    """Per-epoch orders and learning rates, one call, against the reference's train_epochs
    and against one train_epoch per epoch."""
    sizes = [6, 17, 4]
    ref, net = pair_of_nets(kernels.name, sizes, "relu", "softmax", "cross_entropy", dtype)
    one_by_one = MLP(sizes, "relu", "softmax", "cross_entropy", leaky_slope=0.1, dtype=dtype,
                     backend=kernels.name, random_state=0)
    X, Y = problem(4, 101, sizes, "softmax", "cross_entropy", dtype)
    orders = _orders(101, 5, 1)
    rates = opt["optimizer"].learning_rate * np.array([1.0, 0.5, 0.25, 0.5, 1.0])
    kw = opt
    l_ref, event_ref = ref.train_epochs(X, Y, rates, batch_size=16, orders=orders, **kw)
    losses, event = net.train_epochs(X, Y, rates, batch_size=16, orders=orders, **kw)
    singles = [one_by_one.train_epoch(X, Y, batch_size=16, learning_rate=r, order=o, **kw)
               for r, o in zip(rates, orders)]
    assert event == event_ref == "completed"
    np.testing.assert_allclose(losses, l_ref, rtol=50 * tol(dtype)["rtol"])
    np.testing.assert_allclose(net.theta, ref.theta, rtol=50 * tol(dtype)["rtol"],
                               atol=50 * tol(dtype)["atol"])
    np.testing.assert_array_equal(losses, singles)  # the same kernel either way: bitwise
    np.testing.assert_array_equal(net.theta, one_by_one.theta)
    assert net.optimizer_state.t == ref.optimizer_state.t


def test_train_epochs_stops_on_the_same_plateau_as_the_reference(kernels, dtype):
    from fastmlp.stopping import Plateau

    sizes = [6, 9, 3]
    ref, net = pair_of_nets(kernels.name, sizes, "tanh", "softmax", "cross_entropy", dtype)
    X, Y = problem(8, 60, sizes, "softmax", "cross_entropy", dtype)
    rules = [Plateau(tol=0.05, patience=2), Plateau(tol=0.05, patience=2)]
    runs = [m.train_epochs(X, Y, [0.05] * 40, batch_size=10, optimizer="adam", plateau=rule)
            for m, rule in zip((ref, net), rules)]
    (l_ref, e_ref), (losses, event) = runs
    assert event == e_ref == "plateau"
    assert len(losses) == len(l_ref) < 40
    assert (rules[1].best, rules[1].count) == pytest.approx((rules[0].best, rules[0].count),
                                                            rel=50 * tol(dtype)["rtol"])
    assert rules[1].count == 3  # patience exceeded
    np.testing.assert_allclose(net.theta, ref.theta, rtol=50 * tol(dtype)["rtol"],
                               atol=50 * tol(dtype)["atol"])


@pytest.mark.parametrize("optimizer", [dict(optimizer=Optimizer("sgd", momentum=0.9)),
                                       dict(optimizer="adam")], ids=["momentum", "adam"])
@pytest.mark.parametrize("n_threads,batch_size", [(1, 8), (2, 64)], ids=["serial", "split"])
def test_train_epochs_undoes_the_diverging_epoch(kernels, optimizer, n_threads, batch_size):
    """The guard: the epoch that turns the weights non-finite is undone (weights, moments and
    t as after the last finite epoch), and the call says so; also when each thread of a split
    minibatch keeps the snapshot of the slice it updates."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(256, 5)), rng.normal(size=(256, 2))
    nets = [MLP([5, 8, 2], "relu", "identity", "squared_error", backend=b, random_state=0,
                n_threads=n_threads) for b in (kernels.name, "numpy")]
    rates = [1e-3] * 3 + [1e305] * 27  # three calm epochs, then a rate that overflows
    for net in nets:
        losses, event = net.train_epochs(X, Y, rates, batch_size=batch_size, **optimizer)
        assert event == "diverged" and 3 <= len(losses) < 30
        assert np.isfinite(net.theta).all() and np.isfinite(losses).all()
        # the state after the last completed epoch: replaying that many epochs gives it
        replay = MLP([5, 8, 2], "relu", "identity", "squared_error", backend=net.backend.name,
                     random_state=0, n_threads=n_threads)
        replay.train_epochs(X, Y, rates[:len(losses)], batch_size=batch_size, **optimizer)
        np.testing.assert_array_equal(net.theta, replay.theta)
        np.testing.assert_array_equal(net.optimizer_state.first, replay.optimizer_state.first)
        np.testing.assert_array_equal(net.optimizer_state.second, replay.optimizer_state.second)
        assert net.optimizer_state.t == replay.optimizer_state.t
    assert len(nets[0].last_epochs_terms) == len(nets[1].last_epochs_terms)


def test_train_epochs_rejects_bad_orders_and_rates(kernels):
    sizes = [4, 5, 3]
    net = MLP(sizes, backend=kernels.name, random_state=0)
    X, Y = problem(1, 20, sizes)
    good = _orders(20, 3, 0)
    bad = good.copy()
    bad[1, 3] = bad[1, 4]
    cases = [
        (dict(learning_rates=[0.1] * 3, orders=bad), ValueError, "permutation"),
        (dict(learning_rates=[0.1] * 3, orders=good + 1), ValueError, "permutation"),
        (dict(learning_rates=[0.1] * 2, orders=good), ValueError, r"orders has shape \(3, 20\)"),
        (dict(learning_rates=[0.1] * 3, orders=good[:, :10]), ValueError, "orders has shape"),
        (dict(learning_rates=[0.1] * 3, orders=good.astype(float)), TypeError, "integer"),
        (dict(learning_rates=[0.1, np.nan, 0.1], orders=good), ValueError, "finite and > 0"),
        (dict(learning_rates=[], orders=None), ValueError, "non-empty"),
    ]
    before = net.theta.copy()
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            net.train_epochs(X, Y, **kwargs)
    np.testing.assert_array_equal(net.theta, before)  # nothing reached the kernel


@pytest.mark.process
def test_auto_imports_only_the_backend_it_picks():
    """A process's first fit should not pay for importing backends it does not use."""
    import subprocess
    import sys

    code = ("import sys, fastmlp; b = fastmlp.get_backend('auto'); "
            "print(b.name, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[0] == fastmlp.available_backends()[0]
    assert out[1] == str(out[0] == "numba")


def test_outputs_that_share_memory_with_an_input_are_rejected(backend):
    """A kernel reads its inputs while it writes its outputs: an overlap would give wrong
    values silently (the compiled ones differed from the reference by up to 36.6)."""
    kernels = fastmlp.get_backend(backend)
    rng = np.random.default_rng(0)
    A, W, b = rng.normal(size=(6, 4)), rng.normal(size=(4, 4)), rng.normal(size=4)
    delta = rng.normal(size=(6, 4))
    grads = np.zeros(4 * 4 + 4)
    grad_W, grad_b = grads[:16].reshape(4, 4), grads[16:]
    probs = np.full((6, 4), 0.25)
    cases = [
        ("out", "A_in", lambda: kernels.forward_layer(A, W, b, "relu", A)),
        ("out", "W", lambda: kernels.forward_layer(A[:4], W, b, "relu", W)),
        ("grad_W", "A_in", lambda: kernels.backward_layer(A[:4], delta[:4], W, A[:4], grad_b)),
        ("grad_W", "grad_b", lambda: kernels.backward_layer(A, delta, W, grad_W,
                                                              grads[12:16])),
        ("delta_in", "A_in", lambda: kernels.backward_layer(A, delta, W, grad_W, grad_b, A,
                                                             "relu")),
        ("delta_in", "delta", lambda: kernels.backward_layer(A, delta, W, grad_W, grad_b,
                                                              delta, "relu")),
        ("delta", "A_out", lambda: kernels.output_delta(probs, probs * 0, "softmax",
                                                         "cross_entropy", probs)),
    ]
    for written, read, call in cases:
        with pytest.raises(ValueError, match=f"{written} shares memory with {read}"):
            call()
    net = MLP([4, 3], backend=backend, random_state=0)
    opt, state = fastmlp.optim.Optimizer("sgd", 0.1), fastmlp.optim.OptimizerState.zeros(15,
                                                                                   np.float64)
    before = net.theta.copy()
    with pytest.raises(ValueError, match="theta shares memory with X"):
        kernels.train_epochs(net.arch, net.theta, net.theta[:12].reshape(3, 4), np.eye(3),
                             None, None, 1, opt, state, [0.1])
    with pytest.raises(ValueError, match="theta shares memory with state.first"):
        kernels.train_epochs(net.arch, net.theta, A[:3], np.eye(3), None, None, 1, opt,
                             fastmlp.optim.OptimizerState(net.theta, state.second), [0.1])
    np.testing.assert_array_equal(net.theta, before)
    with pytest.raises(ValueError, match="theta shares memory with X"):
        net.train_epochs(net.theta[:12].reshape(3, 4), np.eye(3), [0.1])

    # disjoint parts of one buffer are fine, and give the reference's values
    buffer = np.concatenate([A, np.zeros_like(A)])
    out = kernels.forward_layer(buffer[:6], W, b, "tanh", buffer[6:])
    np.testing.assert_allclose(out, reference.forward_layer(A, W, b, "tanh",
                                                             np.empty((6, 4))), **tol(A.dtype))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_minibatch_whose_weights_are_all_zero_makes_no_step(backend, optimizer):
    """Its mean gradient is 0/0: the step is skipped (θ, moments and Adam's t as if the
    minibatch were not there) and it adds nothing to the epoch's loss — never a NaN."""
    sizes = [5, 7, 3]
    X, Y = problem(2, 40, sizes)
    w = np.linspace(0.5, 1.5, 40)
    w[10:20] = 0  # the second minibatch of 10, rows in order
    kept = np.r_[0:10, 20:40]
    nets = [MLP(sizes, backend=backend, random_state=0) for _ in range(2)]
    with_zero = nets[0].train_epochs(X, Y, [0.1, 0.1], 10, optimizer, sample_weight=w)
    without = nets[1].train_epochs(X[kept], Y[kept], [0.1, 0.1], 10, optimizer,
                                   sample_weight=w[kept])
    assert with_zero[1] == without[1] == "completed"
    np.testing.assert_array_equal(nets[0].theta, nets[1].theta)
    assert nets[0].optimizer_state.t == nets[1].optimizer_state.t
    np.testing.assert_allclose(with_zero[0] * 40, without[0] * 30, rtol=1e-12)


@pytest.mark.parametrize("weight_sum", [3, 4, 5, 8, 6.5, 0.5])
def test_the_mean_gradient_rounds_as_the_division(kernels, dtype, weight_sum):
    """(∂L/∂θ + l2·θ) / Σw is the division's own rounding for any Σw: the kernels multiply
    by 1/Σw only where that reciprocal is exact (a power of two). Integer inputs and weights
    make every product and sum before the division exact, so one SGD step at learning rate 1
    must equal the reference's bit for bit (a kernel multiplying by a rounded 1/3 does not)."""
    rng = np.random.default_rng(7)
    sizes = [9, 6]
    n = int(np.ceil(weight_sum))
    X = rng.integers(-8, 9, (n, sizes[0])).astype(dtype)
    Y = rng.integers(-8, 9, (n, sizes[1])).astype(dtype)
    w = np.ones(n)
    w[-1] = weight_sum - (n - 1)  # Σw = weight_sum: a power of two or not
    nets = [MLP(sizes, "relu", "identity", "squared_error", dtype=dtype, backend=name,
                random_state=0) for name in ("numpy", kernels.name)]
    theta = rng.integers(-8, 9, nets[0].theta.shape).astype(dtype)
    for net in nets:
        net.theta[:] = theta
        net.train_epochs(X, Y, [1.0], batch_size=n, optimizer=Optimizer("sgd", l2=0.25),
                         sample_weight=w.astype(dtype), orders=np.arange(n)[None])
    np.testing.assert_array_equal(nets[1].theta, nets[0].theta)
    assert not np.array_equal(nets[1].theta, theta)
