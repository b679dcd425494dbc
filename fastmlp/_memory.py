"""What a network or a fit will allocate at least, and whether this process may have it.

A network too big for the machine is refused with a MemoryError before anything is allocated:
with the operating system's overcommit, allocating it would succeed and the process would be
killed later, when the pages are written. The estimate counts only what is certain to be
allocated (a lower bound), so a fit that fits is never refused.
"""
import os

try:
    import resource
except ImportError:  # Windows: no address-space limit to read
    resource = None

import psutil

from .architecture import layout

#: Below this many bytes nothing is checked: reading the machine's memory costs more than a
#: small call, and numpy's own MemoryError is then as good.
CHECK_ABOVE = 64 * 2**20
#: L-BFGS-B's working memory, in float64 vectors of the parameters' length: its m = 10
#: correction pairs (2m) and five vectors more (scipy's wa array: 2mn + 5n + ...).
LBFGS_VECTORS = 2 * 10 + 5


def network_bytes(layer_units, itemsize):
    """A network's θ and its optimizer's two moment vectors, and the float64 draw of its
    largest layer's initial weights (fastmlp.MLP allocates them)."""
    largest = max(a * b for a, b in zip(layer_units[:-1], layer_units[1:]))
    return 3 * layout(layer_units)[1] * itemsize + largest * 8


def fit_bytes(layer_units, itemsize, *, solver, rows, early_stopping, refit):
    """What a fit allocates at least beside its network: the gradient, the best weights for
    early stopping, a refit's copy of the model it keeps in case of failure (θ and moments),
    the activations and deltas of the `rows` a step works on, and L-BFGS's float64 memory."""
    p = layout(layer_units)[1]
    vectors = 1 + early_stopping + 3 * refit
    total = vectors * p * itemsize + rows * (2 * sum(layer_units[1:]) + layer_units[-1]) * itemsize
    if solver == "lbfgs":
        total += LBFGS_VECTORS * p * 8
    return total


def available_bytes():
    """What this process may still allocate: the least of the machine's available memory,
    what its memory cgroup's limit leaves and what its address-space limit (ulimit -v) leaves."""
    limits = [psutil.virtual_memory().available]
    if resource is not None:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft - psutil.Process().memory_info().vms)
    left = _cgroup_left()
    if left is not None:
        limits.append(left)
    return max(0, min(limits))


def _cgroup_left():
    """The memory cgroup's limit minus its usage (cgroup v2, then v1), or None without one."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            where = os.path.join("/sys/fs/cgroup", path.lstrip("/"))
            limit, usage = _read(where, "memory.max"), _read(where, "memory.current")
        elif "memory" in controllers.split(","):  # v1
            where = os.path.join("/sys/fs/cgroup/memory", path.lstrip("/"))
            limit = _read(where, "memory.limit_in_bytes")
            usage = _read(where, "memory.usage_in_bytes")
        else:
            continue
        if limit is not None and usage is not None and limit < 2**62:
            return limit - usage
    return None


def _read(folder, name):
    try:
        with open(os.path.join(folder, name)) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def check(need, what):
    """MemoryError before allocating `need` bytes for `what` when this process may not have
    them."""
    if need <= CHECK_ABOVE:
        return
    have = available_bytes()
    if need > have:
        raise MemoryError(
            f"{what} needs at least {_size(need)}, and this process may allocate "
            f"{_size(have)} more (the machine's available memory, its cgroup's and ulimit's "
            "limits): nothing was allocated. Use fewer or narrower hidden layers, a smaller "
            "batch_size, or float32 input (half the memory).")


def _size(n):
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
