"""Argument checks shared by every backend's public kernel functions.

They run in Python before any compiled code, so a wrong shape or dtype raises a clear error
instead of reaching a kernel that skips bounds checks. Inputs that are merely non-contiguous
or read-only are copied/accepted; outputs must be writable C-contiguous buffers of the exact
shape and dtype, because a kernel writes into them.
"""
import contextlib
import threading

import numpy as np

from .. import activations, losses

_trust = threading.local()


@contextlib.contextmanager
def trusted_inputs(orders=False):
    """Skip the NaN/inf scan (not the shape checks) inside this block, in this thread.

    For callers that guarantee finiteness themselves, as MLP does: its inputs are checked on
    entry and its weights whenever they are set or trained. The scan reads every input
    element, which costs as much as a quarter of a 128x784x256 GEMM. orders=True also skips
    the test that each row order is a permutation (a bincount over every order) for
    orders the caller drew itself, as the estimators do; their bounds are still checked.
    """
    previous = getattr(_trust, "on", False), getattr(_trust, "orders", False)
    _trust.on, _trust.orders = True, orders
    try:
        yield
    finally:
        _trust.on, _trust.orders = previous

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _array(a, name):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    return a


def common_dtype(**arrays):
    """The one float dtype shared by all arrays, or a TypeError naming the odd one out."""
    dtypes = {name: _array(a, name).dtype for name, a in arrays.items() if a is not None}
    first_name, dtype = next(iter(dtypes.items()))
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{first_name} has dtype {dtype}; kernels take float32 or float64")
    for name, other in dtypes.items():
        if other != dtype:
            raise TypeError(f"dtype mismatch: {first_name} is {dtype} but {name} is {other}")
    return dtype


def input_array(a, name, shape, finite=True):
    """Check ndim/shape (None = any length) and finiteness; return a C-contiguous array
    (a copy only if needed: read-only and memory-mapped inputs are read in place)."""
    _array(a, name)
    if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape)):
        raise ValueError(f"{name} has shape {a.shape}, expected {_fmt(shape)}")
    a = np.ascontiguousarray(a)
    if finite and not getattr(_trust, "on", False):
        check_finite(a, name)
    return a


def check_finite(a, name):
    """ValueError naming the first NaN/inf and its position.

    The sum is the fast test: any NaN or inf makes it non-finite. Only when it is not (or
    finite values overflowed) does the exact, slower elementwise test run.
    """
    if a.size == 0 or a.dtype.kind != "f":
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(a, axis=None)
    if np.isfinite(total):
        return
    bad = ~np.isfinite(a)
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains {a[position]} at position {position}; "
                         "inputs must be finite")


def output_array(a, name, shape):
    """Check an output buffer: exact shape, C-contiguous, writable."""
    _array(a, name)
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is written in place)")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only; it must be a writable buffer")
    return a


def _fmt(shape):
    return "(" + ", ".join("n" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_forward(A_in, W, b, activation, out):
    common_dtype(A_in=A_in, W=W, b=b, out=out)
    activations.check_activation(activation)
    W = input_array(W, "W", (None, None))
    n_in, n_out = W.shape
    A_in = input_array(A_in, "A_in", (None, n_in))
    b = input_array(b, "b", (n_out,))
    output_array(out, "out", (A_in.shape[0], n_out))
    return A_in, W, b


def check_backward(A_in, delta, W, grad_W, grad_b, delta_in, activation_in):
    common_dtype(A_in=A_in, delta=delta, W=W, grad_W=grad_W, grad_b=grad_b, delta_in=delta_in)
    W = input_array(W, "W", (None, None))
    n_in, n_out = W.shape
    A_in = input_array(A_in, "A_in", (None, n_in))
    delta = input_array(delta, "delta", (A_in.shape[0], n_out))
    output_array(grad_W, "grad_W", (n_in, n_out))
    output_array(grad_b, "grad_b", (n_out,))
    if delta_in is not None:
        output_array(delta_in, "delta_in", A_in.shape)
        if activation_in is None:
            raise ValueError("activation_in is required when delta_in is given")
        activations.check_activation(activation_in, hidden=True)
    return A_in, delta, W


def check_output_delta(A_out, Y, activation, loss, delta, sample_weight):
    common_dtype(A_out=A_out, Y=Y, delta=delta, sample_weight=sample_weight)
    activations.check_activation(activation)
    losses.check_loss(loss, activation)
    A_out = input_array(A_out, "A_out", (None, None))
    Y = input_array(Y, "Y", A_out.shape)
    output_array(delta, "delta", A_out.shape)
    if sample_weight is not None:
        sample_weight = input_array(sample_weight, "sample_weight", (A_out.shape[0],))
    return A_out, Y, sample_weight


#: What ended a train_epochs call (the compiled kernels return the index).
EVENTS = ("completed", "plateau", "diverged")


def check_train_epochs(arch, theta, X, Y, sample_weight, orders, batch_size, state,
                       learning_rates):
    """Validate train_epochs' arguments; returns (X, Y, sample_weight, orders, batch_size,
    learning_rates) ready for kernels: orders (1 or n_epochs, n) int64, one permutation per
    row; learning_rates (n_epochs,) float64, each finite and > 0."""
    learning_rates = np.asarray(learning_rates, dtype=np.float64)
    if learning_rates.ndim != 1 or learning_rates.shape[0] < 1:
        raise ValueError("learning_rates must be a non-empty 1-D sequence (one per epoch), "
                         f"got shape {learning_rates.shape}")
    if not (np.all(np.isfinite(learning_rates)) and np.all(learning_rates > 0)):
        raise ValueError("learning_rates must be finite and > 0")
    n_epochs = learning_rates.shape[0]
    if orders is not None:
        orders = np.asarray(orders)
        if orders.ndim == 1:
            orders = orders[None]
        if orders.ndim != 2 or orders.shape[0] not in (1, n_epochs):
            raise ValueError(f"orders has shape {orders.shape}, expected (n_samples,), "
                             f"(1, n_samples) or ({n_epochs}, n_samples)")
    X, Y, sample_weight, first, batch_size = check_train_epoch(
        arch, theta, X, Y, sample_weight, None if orders is None else orders[0], batch_size,
        state)
    if orders is None or orders.shape[0] == 1:
        return X, Y, sample_weight, first[None], batch_size, learning_rates
    n = X.shape[0]
    if orders.shape[1] != n:
        raise ValueError(f"orders has shape {orders.shape}, expected ({n_epochs}, {n})")
    if orders.dtype.kind not in "iu":
        raise TypeError(f"orders must hold integer row indices, got dtype {orders.dtype}")
    orders = np.ascontiguousarray(orders, dtype=np.int64)
    if not _permutations(orders, n):
        raise ValueError("each row of orders must be a permutation of range(n_samples)")
    return X, Y, sample_weight, orders, batch_size, learning_rates


def _permutations(orders, n):
    """O(size): every row of the (k, n) int64 orders in bounds — the kernels index X with them
    unchecked — and, unless the caller drew them itself (trusted_inputs(orders=True)), each
    a permutation: every (row, index) pair counted once."""
    if orders.min() < 0 or orders.max() >= n:
        return False
    if getattr(_trust, "orders", False):
        return True
    pairs = (orders + n * np.arange(orders.shape[0])[:, None]).ravel()
    return bool(np.all(np.bincount(pairs, minlength=orders.size) == 1))


def check_train_epoch(arch, theta, X, Y, sample_weight, order, batch_size, state):
    """Validate train_epoch's arguments; returns (X, Y, sample_weight, order) ready for kernels."""
    common_dtype(theta=theta, X=X, Y=Y, sample_weight=sample_weight,
                 first=state.first, second=state.second)
    output_array(theta, "theta", (arch.n_params,))
    output_array(state.first, "state.first", (arch.n_params,))
    output_array(state.second, "state.second", (arch.n_params,))
    X = input_array(X, "X", (None, arch.layer_sizes[0]))
    n = X.shape[0]
    if n == 0:
        raise ValueError("X has no rows")
    Y = input_array(Y, "Y", (n, arch.layer_sizes[-1]))
    if sample_weight is not None:
        sample_weight = input_array(sample_weight, "sample_weight", (n,))
    if order is None:
        order = np.arange(n, dtype=np.int64)
    else:
        order = input_array(order, "order", (n,), finite=False)
        if order.dtype.kind not in "iu":
            raise TypeError(f"order must hold integer row indices, got dtype {order.dtype}")
        order = np.ascontiguousarray(order, dtype=np.int64)
        if not _permutations(order[None], n):
            raise ValueError("order must be a permutation of range(n_samples)")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return X, Y, sample_weight, order, min(batch_size, n)
