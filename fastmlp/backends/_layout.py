"""The compiled kernels' interface, defined once: codes, records, argument bundles, size rules.

Both compiled twins (``_numba_kernels.py`` and ``_cython_kernels.pyx``) take their
multi-epoch entry point's arguments as five named bundles and read every scalar by name:

    train_epochs(network, data, optimizer, workspace, control)

* ``Network``    θ, the layer layout (offsets, sizes) and the activation/loss codes
* ``Data``       X (dense, or sparse as CSR arrays), Y, the sample weights and the epochs'
                 row orders
* ``Optimizer``  the ``HYPER`` record (update rule and its constants), the learning rates,
                 the two moment vectors
* ``Workspace``  the preallocated buffers (gradients, activations, deltas, gathered rows)
* ``Control``    minibatch size and split, the divergence guard, the ``PLATEAU`` record
                 (scikit-learn's stopping rule, updated in place), the ``OUTCOME`` record
                 (epochs completed, Adam's t, the event), the per-epoch loss sums, the stop
                 flag (read once per minibatch: fastmlp.interrupts), the time budget
                 (seconds, checked after each epoch) and the threads a split minibatch's
                 team may run (the cython twin's; numba's is its own thread count)

The records are NumPy structured dtypes: numba reads them by field, the Cython twin through
the structs in ``_layout.pxd``, whose layout (and every enum value and size rule restated
there) the extension checks against this module when it is imported.

Adding a hyperparameter: a field in HYPER (or a scalar in a bundle), the line in
``optimizer_bundle`` that fills it, and the two kernels that read it.
"""
import enum
import functools
from collections import namedtuple

import numpy as np

from .. import activations, losses

# -- codes -----------------------------------------------------------------------------------
#: Activation codes, in fastmlp.activations.ACTIVATIONS' order.
Activation = enum.IntEnum("Activation", [(a.upper(), i)
                                         for i, a in enumerate(activations.ACTIVATIONS)])
#: Loss codes, in fastmlp.losses.LOSSES' order.
Loss = enum.IntEnum("Loss", [(name.upper(), i) for i, name in enumerate(losses.LOSSES)])


class Event(enum.IntEnum):
    """What ended a train_epochs call."""
    COMPLETED = 0    # every epoch asked for, or as many as the time budget allowed
    PLATEAU = 1
    DIVERGED = 2
    INTERRUPTED = 3  # the stop flag was raised; the epoch under way was undone (guard on)


#: The events by name, as the Python API reports them.
EVENTS = tuple(e.name.lower() for e in Event)


class Update(enum.IntEnum):
    """The optimizer update a kernel applies (optim.step's branches). The kernels keep (and
    the guard snapshots) the first moment for every rule but SGD, the second for ADAM."""
    SGD = 0        # θ ← θ - η g: no moment kept
    MOMENTUM = 1   # v ← μ v - η g; θ ← θ + v
    NESTEROV = 2   # v as MOMENTUM; θ ← θ + μ v - η g
    ADAM = 3       # both moments and the step count t


def update_rule(opt):
    """The Update an optim.Optimizer applies (plain SGD keeps no velocity: optim.py)."""
    if opt.name == "adam":
        return Update.ADAM
    if opt.nesterov:
        return Update.NESTEROV
    return Update.MOMENTUM if opt.momentum != 0 else Update.SGD


# -- records ---------------------------------------------------------------------------------
def _record(*fields):
    return np.dtype(list(fields), align=True)


#: The update rule and its constants, as given (float64); kernels round each to θ's dtype
#: once, as the reference's NumPy arithmetic on θ does.
HYPER = _record(("rule", np.int64), ("momentum", np.float64), ("l2", np.float64),
                ("beta_1", np.float64), ("beta_2", np.float64), ("epsilon", np.float64))
#: stopping.Plateau in the form the kernels update in place; patience < 0: no rule.
PLATEAU = _record(("tol", np.float64), ("patience", np.int64), ("best", np.float64),
                  ("count", np.int64), ("scale", np.float64))
#: What a call did: epochs completed, Adam's step count after them (in: before), the Event.
OUTCOME = _record(("epochs", np.int64), ("t", np.int64), ("event", np.int64))

RECORDS = {"Hyper": HYPER, "Plateau": PLATEAU, "Outcome": OUTCOME}


def record(dtype, **values):
    """A one-element array of the record `dtype` with these field values (all required)."""
    if values.keys() != set(dtype.names):
        raise TypeError(f"record needs exactly the fields {dtype.names}, got {sorted(values)}")
    return np.array([tuple(values[name] for name in dtype.names)], dtype)


@functools.lru_cache(maxsize=64)
def hyper_record(opt):
    """HYPER for an optim.Optimizer: cached, so read-only (the kernels only read it)."""
    out = record(HYPER, rule=update_rule(opt), momentum=opt.momentum, l2=opt.l2,
                 beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)
    out.flags.writeable = False
    return out


def fill_plateau(out, plateau):
    """Write a stopping.Plateau (None: no rule) into the one-element PLATEAU array `out`."""
    if plateau is None:
        out[0] = (0.0, -1, np.inf, 0, 1.0)
    else:
        out[0] = (plateau.tol, plateau.patience, plateau.best, plateau.count, plateau.scale)


# -- argument bundles ------------------------------------------------------------------------
Network = namedtuple("Network", "theta offsets sizes hidden output loss leaky_slope")
#: X is dense, or (sparse) an empty (0, n_features) stand-in beside X's CSR arrays: values,
#: column indices and row pointers (both int32 or both int64), read row by row by the first
#: layer.
Data = namedtuple("Data", "X Y sample_weight has_sample_weight orders sparse X_values "
                          "X_indices X_indptr")
Optimizer = namedtuple("Optimizer", "hyper learning_rates first second")
Workspace = namedtuple("Workspace", "grad parts part_losses acts deltas xb yb wb saved")
Control = namedtuple("Control", "batch_size min_chunk_rows guard plateau outcome terms stop "
                                "time_budget threads")

BUNDLES = (Network, Data, Optimizer, Workspace, Control)


def network_bundle(arch, theta):
    hidden, output, loss = arch.codes
    return Network(theta, arch.offsets, arch.sizes, hidden, output, loss, arch.leaky_slope)


# -- size rules ------------------------------------------------------------------------------
#: Below this many multiply-adds a layer's product runs as plain loops, above it as BLAS
#: GEMMs (a call costs more than the loop at tiny, batch-1 shapes: `python -m bench.crossover`).
SMALL_WORK = 1024
#: A GEMM's output is made in row blocks of about BLOCK_BYTES, so its epilogue (bias and
#: activation, or δ ⊙ g') finds the block in L2; never fewer than MIN_BLOCK_ROWS rows (smaller
#: GEMMs lose more to BLAS threading than the cache saves: `python -m bench.data_parallel`)
#: nor fewer than BLOCK_DEPTHS times the GEMM's inner dimension: each block's GEMM packs all
#: of W again, which costs more than the cache saves unless the block is taller than W is
#: deep (`python -m bench.block_rows`).
BLOCK_BYTES = 1 << 20
MIN_BLOCK_ROWS = 256
BLOCK_DEPTHS = 2
#: The cython twin turns δ Wᵀ into gemm('N', 'N') on a transposed stack copy of W when W is
#: at most NARROW_OUT wide and NARROW_WORDS big (`python -m bench.crossover` measures it).
NARROW_OUT = 16
NARROW_WORDS = 4096
#: BLAS takes 32-bit sizes: a product or dot over more than BLAS_ROWS rows (or elements) is
#: summed in slices of BLAS_ROWS, a power of two, so anything smaller stays one call. A layer
#: may have at most MAX_UNITS units, a BLAS dimension (the contract refuses wider ones).
BLAS_ROWS = 1 << 30
MAX_UNITS = (1 << 31) - 1
#: Words between two threads' row blocks in a split minibatch's buffers (cython twin):
#: 4-8 KiB, past the prefetchers' reach, so no thread touches a line another one writes.
CHUNK_GAP = 1024
#: Thread c of a split update owns θ[_slice_start(c) : _slice_start(c + 1)] (both kernels);
#: the starts are multiples of SLICE_ALIGN elements (64 bytes in float32), so no two threads
#: share a line.
SLICE_ALIGN = 16
#: A minibatch is split across threads (each its own rows and gradient buffer, BLAS single
#: threaded) when each thread gets at least CHUNK_MIN_ROWS rows and its forward GEMMs total at
#: most CHUNK_MAX_WORK multiply-adds; past that BLAS's own threads use the cores as well
#: (`python -m bench.data_parallel` measures both sides).
CHUNK_MIN_ROWS = 32
CHUNK_MAX_WORK = 20_000_000

#: The constants each compiled twin restates (the extension checks them at import, the
#: parity test for numba).
SIZE_RULES = dict(SMALL_WORK=SMALL_WORK, BLOCK_BYTES=BLOCK_BYTES, MIN_BLOCK_ROWS=MIN_BLOCK_ROWS,
                  BLOCK_DEPTHS=BLOCK_DEPTHS,
                  NARROW_OUT=NARROW_OUT, NARROW_WORDS=NARROW_WORDS, SLICE_ALIGN=SLICE_ALIGN,
                  BLAS_ROWS=BLAS_ROWS)


def data_parallel_chunks(layer_sizes, batch_size, n_threads):
    """How many threads a compiled backend's minibatch step is split across (1: not split)."""
    work = batch_size * sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
    if n_threads > 1 and batch_size >= 2 * CHUNK_MIN_ROWS and work <= CHUNK_MAX_WORK:
        return n_threads
    return 1


#: OpenBLAS runs a GEMM of at most this many multiply-adds on one thread, whatever its thread
#: count (interface/gemm.c: SMP_THRESHOLD_MIN × GEMM_MULTITHREAD_THRESHOLD, 65536 × 4 unless
#: built otherwise).
BLAS_ONE_THREAD_WORK = 65536 * 4


def one_thread(layer_sizes, batch_size, n_chunks):
    """True if a step runs on one thread whatever the thread count: an unsplit minibatch
    whose every product is small enough for BLAS to keep to one thread (the busy machine's
    team then need not be measured)."""
    return n_chunks == 1 and batch_size * max(
        a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:])) <= BLAS_ONE_THREAD_WORK


def chunk_rows(batch_size, n_chunks, width):
    """Length of a workspace buffer holding a minibatch's rows of `width`, split in n_chunks
    row blocks, each in a region of its own, CHUNK_GAP words apart (one region: no gap)."""
    rows = -(-batch_size // n_chunks)
    return n_chunks * (rows * width + (CHUNK_GAP if n_chunks > 1 else 0))


# -- the C declarations, generated -----------------------------------------------------------
_C_TYPES = {np.dtype(np.int64): "int64_t", np.dtype(np.float64): "double"}


def pxd_text():
    """_records.pxd as it must read: the records, codes and size rules above, for C, and the
    function with which the extension checks them at import. tests/test_twins.py compares
    the file with this; after a change here regenerate it:

        python -c "from fastmlp.backends import _layout; print(_layout.pxd_text(), end='')" \\
            > fastmlp/backends/_records.pxd
    """
    lines = ["# Generated by fastmlp.backends._layout.pxd_text() (its docstring says how):",
             "# edit _layout.py, not this file. The extension checks it against _layout at",
             "# import (_check_layout), tests/test_twins.py that it is up to date.",
             "from libc.stdint cimport int64_t", ""]
    for name, dtype in RECORDS.items():
        lines.append(f"ctypedef struct {name}:")
        lines += [f"    {_C_TYPES[dtype.fields[field][0]]} {field}" for field in dtype.names]
        lines.append("")
    for enum_type in (Activation, Loss, Event, Update):
        lines.append(f"cdef enum {enum_type.__name__}:")
        lines += [f"    {member.name} = {int(member)}" for member in enum_type]
        lines.append("")
    lines.append("cdef enum:")
    lines += [f"    {name} = {value}" for name, value in SIZE_RULES.items()]
    lines += ["", "", "cdef inline dict declared_layout():",
              '    """What this file declares (for _check_layout): each record\'s size and',
              '    field offsets, every code and size rule."""',
              "    return {"]
    for name, dtype in RECORDS.items():
        offsets = ", ".join(f'"{field}": <size_t>&(<{name}*>NULL).{field}'
                            for field in dtype.names)
        lines.append(f'        "{name}": (sizeof({name}), {{{offsets}}}),')
    for enum_type in (Activation, Loss, Event, Update):
        codes = ", ".join(f'"{m.name}": {m.name}' for m in enum_type)
        lines.append(f'        "{enum_type.__name__}": {{{codes}}},')
    rules = ", ".join(f'"{name}": {name}' for name in SIZE_RULES)
    lines += [f'        "SIZE_RULES": {{{rules}}},', "    }", ""]
    return "\n".join(lines)


def expected_layout():
    """What declared_layout() must return (the extension compares the two at import)."""
    layout = {name: (dtype.itemsize, {f: dtype.fields[f][1] for f in dtype.names})
              for name, dtype in RECORDS.items()}
    for enum_type in (Activation, Loss, Event, Update):
        layout[enum_type.__name__] = {m.name: int(m) for m in enum_type}
    layout["SIZE_RULES"] = dict(SIZE_RULES)
    return layout
