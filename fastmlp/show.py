"""show_config(): what this installation has (backends, BLAS, OpenMP, vector exp, threads)."""
from __future__ import annotations

import platform


def config() -> dict[str, object]:
    """Describe the installation.

    Returns
    -------
    facts : dict
        The versions, CPUs, compiled extension, OpenMP, BLAS and backends, as
        `show_config` prints them.
    """
    import numpy as np
    from threadpoolctl import threadpool_info

    from . import __version__, _cpu_load
    from ._threads import cpu_count
    from .settings import get_config
    from .backends import available_backends, get_backend

    try:
        from . import _build_info

        openmp, libmvec = _build_info.openmp_enabled(), _build_info.libmvec_enabled()
        timers, extension = _build_info.phase_timers_enabled(), True
        target = "this machine's CPU (-march=native)" if _build_info.native() else "portable"
    except ImportError:  # built without a C compiler
        openmp, libmvec, timers, extension = False, False, False, False
        target = "not built (no C compiler at install: the numba and numpy backends only)"
    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for info in threadpool_info() if info.get("user_api") == "blas"
    ]
    return {
        "fastmlp": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": cpu_count(),
        "cpus_free_lately": (None if _cpu_load.reading() is None
                             else round(_cpu_load.free_cpus(cpu_count()), 2)),
        "adaptive_threads": get_config()["adaptive_threads"],
        "compiled_extension": extension,
        "compiled_for": target,
        "openmp": openmp,
        "vector_exp": "libmvec" if libmvec else "scalar",
        "phase_timers": timers,
        "backends": available_backends(),
        "auto_backend": get_backend("auto").name,
        "blas": blas,
        "cython_gemms": _cython_gemms(),
    }


def _cython_gemms():
    """Whose BLAS the cython kernels' GEMMs call, and why (backends/_blas.py), or None."""
    try:
        from .backends import cython_backend
    except ImportError:  # built without a C compiler
        return None
    return cython_backend.blas.describe()


def show_config() -> None:
    """Print the installation's backends, BLAS, OpenMP and thread counts (see `config`)."""
    for key, value in config().items():
        print(f"{key:>20}: {value}")
