"""Argument checks shared by every backend's public kernel functions.

They run in Python before any compiled code, so a wrong shape or dtype raises a clear error
instead of reaching a kernel that skips bounds checks. Inputs that are merely non-contiguous
or read-only are copied/accepted; outputs must be writable C-contiguous buffers of the exact
shape and dtype, because a kernel writes into them.
"""
import functools
import weakref

import numpy as np
import scipy.sparse

from .. import activations, losses
from ._layout import EVENTS, MAX_UNITS  # noqa: F401  (EVENTS: the contract's event names)

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
    if finite:
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


def is_sparse(a):
    return scipy.sparse.issparse(a)


def sparse_input(a, name, n_cols, dtype=None):
    """A scipy.sparse input as the kernels read it: CSR whose column indices and row
    pointers are both int32 or both int64 (as scipy keeps them), sorted or not, its values
    finite and of `dtype` (None: as they are, float32 or float64). Copies only what must
    change — the values of another dtype, index arrays of other integer types; X is never
    densified. Its structure is checked, as the kernels index with it
    unchecked: row pointers from 0 to nnz, non-decreasing, columns in [0, n_cols)."""
    a = a.tocsr()
    if a.ndim != 2 or (n_cols is not None and a.shape[1] != n_cols):
        raise ValueError(f"{name} has shape {a.shape}, expected (n, {n_cols})")
    values = a.data if dtype is None else a.data.astype(dtype, copy=False)
    index_dtype = (np.int32 if a.indices.dtype == a.indptr.dtype == np.dtype(np.int32)
                   else np.int64)
    values, indices, indptr = (np.ascontiguousarray(values),
                               np.ascontiguousarray(a.indices, dtype=index_dtype),
                               np.ascontiguousarray(a.indptr, dtype=index_dtype))
    if values.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {values.dtype}; kernels take float32 or float64")
    nnz = values.shape[0]
    if (indptr.shape != (a.shape[0] + 1,) or indptr[0] != 0 or indptr[-1] != nnz
            or indices.shape != (nnz,) or np.any(indptr[1:] < indptr[:-1])
            or nnz and (indices.min() < 0 or indices.max() >= a.shape[1])):
        raise ValueError(f"{name} is not a valid CSR matrix (its row pointers or column "
                         "indices are out of range)")
    check_finite(values, name)
    if values is a.data and indices is a.indices and indptr is a.indptr:
        return a
    return scipy.sparse.csr_array((values, indices, indptr), shape=a.shape)


def data_of(a):
    """The array holding a (dense or sparse) input's values: for dtype and overlap checks."""
    if not is_sparse(a):
        return a
    return (a if a.format in ("csr", "csc", "coo") else a.tocsr()).data


def matrix_input(a, name, n_cols):
    """A kernel's 2-D input: input_array, or sparse_input for a scipy.sparse one."""
    if is_sparse(a):
        return sparse_input(a, name, n_cols)
    return input_array(a, name, (None, n_cols))


def weights_array(W):
    """W as input_array takes it, each side at most MAX_UNITS: a BLAS dimension."""
    if max(_array(W, "W").shape, default=0) > MAX_UNITS:  # before input_array copies it
        raise ValueError(f"W has shape {W.shape}: a layer may have at most {MAX_UNITS} units "
                         "(BLAS takes 32-bit sizes)")
    return input_array(W, "W", (None, None))


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


def check_disjoint(outputs, inputs):
    """ValueError if an output buffer shares memory with an input or another output: a
    kernel reads its inputs while it writes, so an overlap gives wrong values silently.
    outputs, inputs: {name: array or None}, the arrays the kernel is handed."""
    outputs = [(name, a) for name, a in outputs.items() if a is not None]
    others = outputs + [(name, a) for name, a in inputs.items() if a is not None]
    for i, (name, out) in enumerate(outputs):
        for other_name, other in others[i + 1:]:
            if np.shares_memory(out, other):
                raise ValueError(f"{name} shares memory with {other_name}; a kernel writes "
                                 f"{name} while it reads {other_name}: pass separate arrays")


def _fmt(shape):
    return "(" + ", ".join("n" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_forward(A_in, W, b, activation, out):
    common_dtype(A_in=data_of(A_in), W=W, b=b, out=out)
    activations.check_activation(activation)
    W = weights_array(W)
    n_in, n_out = W.shape
    A_in = matrix_input(A_in, "A_in", n_in)
    b = input_array(b, "b", (n_out,))
    output_array(out, "out", (A_in.shape[0], n_out))
    check_disjoint({"out": out}, {"A_in": data_of(A_in), "W": W, "b": b})
    return A_in, W, b


def check_backward(A_in, delta, W, grad_W, grad_b, delta_in, activation_in):
    common_dtype(A_in=data_of(A_in), delta=delta, W=W, grad_W=grad_W, grad_b=grad_b,
                 delta_in=delta_in)
    W = weights_array(W)
    n_in, n_out = W.shape
    if is_sparse(A_in) and delta_in is not None:
        raise ValueError("a sparse A_in is the network's input: it has no delta_in")
    A_in = matrix_input(A_in, "A_in", n_in)
    delta = input_array(delta, "delta", (A_in.shape[0], n_out))
    output_array(grad_W, "grad_W", (n_in, n_out))
    output_array(grad_b, "grad_b", (n_out,))
    if delta_in is not None:
        output_array(delta_in, "delta_in", A_in.shape)
        if activation_in is None:
            raise ValueError("activation_in is required when delta_in is given")
        activations.check_activation(activation_in, hidden=True)
    check_disjoint({"grad_W": grad_W, "grad_b": grad_b, "delta_in": delta_in},
                   {"A_in": data_of(A_in), "delta": delta, "W": W})
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
    check_disjoint({"delta": delta}, {"A_out": A_out, "Y": Y, "sample_weight": sample_weight})
    return A_out, Y, sample_weight


def check_predict(arch, theta, X, out, labels, label_kind):
    """Validate predict's arguments; returns (theta, X, label_kind as its _layout.Labels
    code) ready for kernels."""
    from ._layout import Labels

    check_architecture(arch)
    common_dtype(theta=theta, X=data_of(X), out=out)
    theta = input_array(theta, "theta", (arch.n_params,))
    X = matrix_input(X, "X", arch.layer_sizes[0])
    n = X.shape[0]
    output_array(out, "out", (n, arch.layer_sizes[-1]))
    names = {k.name.lower(): k for k in Labels}
    if label_kind not in names:
        raise ValueError(f"label_kind must be one of {list(names)}, got {label_kind!r}")
    kind = names[label_kind]
    if kind == Labels.THRESHOLD and arch.layer_sizes[-1] != 1:
        raise ValueError("label_kind 'threshold' needs a single output")
    if kind != Labels.OUTPUT_ONLY:
        if not (isinstance(labels, np.ndarray) and labels.dtype == np.int64):
            raise TypeError("labels must be an int64 array for label_kind "
                            f"{label_kind!r}")
        output_array(labels, "labels", (n,))
    check_disjoint({"out": out, "labels": labels}, {"X": data_of(X), "theta": theta})
    return theta, X, kind


def check_architecture(arch):
    """arch as the kernels trust it: an Architecture whose offsets, sizes and n_params are
    those its layer_sizes imply, whose activations, loss and slope are valid. An Architecture
    cannot be changed after construction, but an object may be altered around that, or be
    something else: a mismatch here would have the kernels read and write outside θ.

    Checked in full once per object; after that only that its attributes are still the
    objects checked (every call of a fit passes here). That suffices because each of them is
    immutable: ints, strings, a float, a tuple of ints, and arrays over immutable bytes
    (`_immutable`); an object holding anything else is checked in full at every call."""
    from ..architecture import Architecture

    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be a fastmlp Architecture, got {type(arch).__name__}")
    attributes = _attributes(arch)
    checked = _checked_architectures.get(arch)
    if checked is not None and all(a is b for a, b in zip(attributes, checked)):
        return arch
    _check_architecture(arch)
    if (_immutable(arch.offsets) and _immutable(arch.sizes) and type(arch.leaky_slope) is float
            and all(type(name) is str for name in attributes[4:7])):
        _checked_architectures[arch] = attributes
    return arch


#: Architecture -> its attributes as checked (weak keys: nothing is kept alive by this).
_checked_architectures = weakref.WeakKeyDictionary()


def _attributes(arch):
    return (arch.layer_sizes, arch.n_params, arch.offsets, arch.sizes, arch.hidden_activation,
            arch.output_activation, arch.loss, arch.leaky_slope)


def _immutable(a):
    """True if no one can write a's elements: its memory is a bytes object's."""
    while isinstance(a, np.ndarray):
        a = a.base
    return type(a) is bytes


def _check_architecture(arch):
    from ..architecture import layout

    sizes = arch.layer_sizes
    if (not isinstance(sizes, tuple) or len(sizes) < 2
            or not all(type(n) is int and 1 <= n <= MAX_UNITS for n in sizes)):
        raise ValueError(f"arch.layer_sizes must be a tuple of at least two ints from 1 to "
                         f"{MAX_UNITS}, got {sizes!r}")
    offsets, n_params = layout(sizes)
    for name, expected in (("offsets", np.array(offsets, np.int64).reshape(-1, 2)),
                           ("sizes", np.array(sizes, np.int64))):
        value = getattr(arch, name)
        if not (isinstance(value, np.ndarray) and value.dtype == np.int64
                and value.flags.c_contiguous and np.array_equal(value, expected)
                and value.shape == expected.shape):
            raise ValueError(f"arch.{name} does not match arch.layer_sizes {list(sizes)}: the "
                             "Architecture was altered")
    if type(arch.n_params) is not int or arch.n_params != n_params:
        raise ValueError(f"arch.n_params is {arch.n_params!r}, but layer sizes {list(sizes)} "
                         f"have {n_params} parameters: the Architecture was altered")
    activations.check_activation(arch.hidden_activation, hidden=True)
    activations.check_activation(arch.output_activation)
    losses.check_loss(arch.loss, arch.output_activation)
    activations.check_leaky_slope(arch.leaky_slope)


def check_train_epochs(arch, theta, X, Y, sample_weight, orders, batch_size, state,
                       learning_rates):
    """Validate train_epochs' arguments; returns (X, Y, sample_weight, orders, batch_size,
    learning_rates) ready for kernels (see check_schedule)."""
    check_architecture(arch)
    common_dtype(theta=theta, X=data_of(X), Y=Y, sample_weight=sample_weight,
                 first=state.first, second=state.second)
    output_array(theta, "theta", (arch.n_params,))
    output_array(state.first, "state.first", (arch.n_params,))
    output_array(state.second, "state.second", (arch.n_params,))
    X = matrix_input(X, "X", arch.layer_sizes[0])
    n = X.shape[0]
    if n == 0:
        raise ValueError("X has no rows")
    Y = input_array(Y, "Y", (n, arch.layer_sizes[-1]))
    if sample_weight is not None:
        sample_weight = input_array(sample_weight, "sample_weight", (n,))
    orders, learning_rates, batch_size = check_schedule(orders, learning_rates, batch_size, n)
    check_disjoint({"theta": theta, "state.first": state.first, "state.second": state.second},
                   {"X": data_of(X), "Y": Y, "sample_weight": sample_weight, "orders": orders,
                    "learning_rates": learning_rates})
    return X, Y, sample_weight, orders, batch_size, learning_rates


def check_summed_gradient(arch, theta, X, Y, sample_weight, rows, grad):
    """Validate summed_gradient's arguments; returns (X, Y, sample_weight, rows) ready for
    kernels: rows a non-empty 1-D int64 array of indices into X's rows (repeats allowed)."""
    check_architecture(arch)
    common_dtype(theta=theta, X=data_of(X), Y=Y, sample_weight=sample_weight, grad=grad)
    theta = input_array(theta, "theta", (arch.n_params,))
    output_array(grad, "grad", (arch.n_params,))
    X = matrix_input(X, "X", arch.layer_sizes[0])
    n = X.shape[0]
    Y = input_array(Y, "Y", (n, arch.layer_sizes[-1]))
    if sample_weight is not None:
        sample_weight = input_array(sample_weight, "sample_weight", (n,))
    if np.asarray(rows).dtype.kind not in "iu":
        raise TypeError(f"rows must hold integer row indices, got dtype {np.asarray(rows).dtype}")
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.ndim != 1 or rows.shape[0] == 0:
        raise ValueError(f"rows must be a non-empty 1-D array of row indices, got shape "
                         f"{rows.shape}")
    if rows.min() < 0 or rows.max() >= n:
        raise ValueError(f"rows must index X's {n} rows: got indices from {rows.min()} to "
                         f"{rows.max()}")
    check_disjoint({"grad": grad}, {"theta": theta, "X": data_of(X), "Y": Y,
                                    "sample_weight": sample_weight, "rows": rows})
    return X, Y, sample_weight, rows


def check_schedule(orders, learning_rates, batch_size, n):
    """The epochs' plan for n rows: orders (1 or n_epochs, n) int64, each row a permutation
    of range(n) (None: the rows in order); learning_rates (n_epochs,) float64, each finite and
    > 0; batch_size an integer >= 1, at most n. Returns (orders, learning_rates, batch_size)."""
    learning_rates = np.ascontiguousarray(learning_rates, dtype=np.float64)
    if learning_rates.ndim != 1 or learning_rates.shape[0] < 1:
        raise ValueError("learning_rates must be a non-empty 1-D sequence (one per epoch), "
                         f"got shape {learning_rates.shape}")
    if not (learning_rates.min() > 0 and learning_rates.max() < np.inf):  # NaN fails both
        raise ValueError("learning_rates must be finite and > 0")
    n_epochs = learning_rates.shape[0]
    given = orders is not None
    if given and np.asarray(orders).dtype.kind not in "iu":
        raise TypeError("order must hold integer row indices, got dtype "
                        f"{np.asarray(orders).dtype}")
    orders = row_orders(orders, n)
    if orders.ndim != 2 or orders.shape[0] not in (1, n_epochs) or orders.shape[1] != n:
        raise ValueError(f"orders has shape {orders.shape}, expected ({n},), (1, {n}) or "
                         f"({n_epochs}, {n})")
    if given and not _permutations(orders, n):
        raise ValueError("each order must be a permutation of range(n_samples)")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return orders, learning_rates, min(int(batch_size), n)


@functools.lru_cache(maxsize=64)
def _rows_in_order(n):
    order = np.arange(n, dtype=np.int64)[None]
    order.setflags(write=False)
    return order


def check_stop(stop, time_budget):
    """train_epochs' stop flag (None, or a writable one-element C-contiguous int64 array: a
    signal handler writes it) and time budget (None: no limit; else seconds > 0), as the
    kernels take them: (stop or None, float seconds, inf for none)."""
    if stop is not None:
        if not (isinstance(stop, np.ndarray) and stop.dtype == np.int64 and stop.shape == (1,)
                and stop.flags.c_contiguous and stop.flags.writeable):
            raise ValueError("stop must be None or a writable int64 array of shape (1,)")
    if time_budget is None:
        return stop, np.inf
    if isinstance(time_budget, bool) or not (float(time_budget) > 0):
        raise ValueError(f"time_budget must be None or seconds > 0, got {time_budget!r}")
    return stop, float(time_budget)


def _permutations(orders, n):
    """O(size): every row of the (k, n) int64 orders in bounds — the kernels index X with them
    unchecked — and each a permutation: every (row, index) pair counted once."""
    if orders.min() < 0 or orders.max() >= n:
        return False
    pairs = (orders + n * np.arange(orders.shape[0])[:, None]).ravel()
    return bool(np.all(np.bincount(pairs, minlength=orders.size) == 1))


def row_orders(orders, n):
    """orders as the kernels take them, (1 or n_epochs, n) int64, for orders a caller drew
    itself (as the estimators do): None is the rows in order (read-only, kept for small n:
    a small call's budget is microseconds); nothing else is checked."""
    if orders is None:
        return _rows_in_order(n) if n <= 1024 else np.arange(n, dtype=np.int64)[None]
    orders = np.ascontiguousarray(orders, dtype=np.int64)
    return orders[None] if orders.ndim == 1 else orders
