"""How many of this process's CPUs other processes leave free, measured as the fit goes.

A thread team whose threads meet at a barrier after every minibatch runs at the pace of its
slowest thread: when another process keeps one of two cores busy, the thread that shares a
core with it is descheduled for whole time slices while its partner waits, and a default fit
becomes slower than a one-thread fit (`python -m bench --contention`). So before each compiled
call a default fit asks `free_cpus()` and runs no bigger a team than that.

The figure is the CPU time the machine spent on everything but this process, over the
interval since the previous reading (Linux: /proc/stat for the CPUs in this process's
affinity mask, getrusage for this process), readings at least MIN_INTERVAL apart; elsewhere
(or when /proc cannot be read) every CPU counts as free. A hypervisor's steal time counts
as busy: those cycles went to another machine.
"""
import os
import resource
import threading
import time

#: Shorter intervals are below /proc/stat's resolution (USER_HZ, 10 ms) to read reliably.
MIN_INTERVAL = 0.05
#: Fields of a /proc/stat cpu line that are not idle (user nice system irq softirq steal;
#: iowait is idle, guest time is already inside user).
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)

_lock = threading.Lock()
_free = None          # the figure from the last interval, None before there is one


def _affinity():
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None


def _machine_busy_seconds(cpus):
    """CPU seconds the CPUs in `cpus` have spent busy since boot (None: unknown)."""
    try:
        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu")]
    except OSError:
        return None
    ticks = 0
    for fields in lines:
        name = fields[0]
        if name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[1:]]
        ticks += sum(values[i] for i in _BUSY_FIELDS if i < len(values))
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reading():
    """(seconds, machine busy seconds, own seconds) now, or None where /proc/stat is not."""
    cpus = _affinity()
    busy = _machine_busy_seconds(cpus) if cpus else None
    if busy is None:
        return None
    return time.monotonic(), busy, _own_seconds()


def free_between(before, after, n_cpus):
    """CPUs left free over the interval from reading `before` to `after`: n_cpus minus the
    cores' worth of CPU time spent outside this process, as a float in [0, n_cpus]."""
    seconds = after[0] - before[0]
    others = (after[1] - before[1]) - (after[2] - before[2])
    return min(float(n_cpus), max(0.0, n_cpus - others / seconds))


def free_cpus(n_cpus):
    """Of n_cpus (this process's), how many other processes left free lately: a float, the
    last interval's figure (n_cpus until the first interval of MIN_INTERVAL has passed)."""
    global _last, _free
    with _lock:  # within an interval the answer is the last one: no /proc/stat reading
        if _last is not None and time.monotonic() - _last[0] < MIN_INTERVAL:
            return float(n_cpus) if _free is None else min(float(n_cpus), _free)
    now = reading()
    if now is None:
        return float(n_cpus)
    with _lock:
        if _last is None:
            _last = now
        elif now[0] - _last[0] >= MIN_INTERVAL:
            _free, _last = free_between(_last, now, n_cpus), now
        return float(n_cpus) if _free is None else min(float(n_cpus), _free)


def team_size(n_threads, n_cpus):
    """The threads a default team may run now: n_threads, fewer when other processes keep
    cores busy (a core counts as free when more than half of it is), at least one."""
    return max(1, min(n_threads, int(free_cpus(n_cpus) + 0.5)))


#: The first interval starts at import: (monotonic seconds, machine busy, own seconds).
_last = reading()
