"""The user's defaults, in scikit-learn's style: set_config, get_config, config_context.

    backend           which kernels `backend="auto"` means: "auto" (the fastest available),
                      or a backend's name. Starts from the FASTMLP_BACKEND environment
                      variable.
    adaptive_threads  whether a fit without n_threads runs fewer threads while other
                      processes keep cores busy (True; FASTMLP_ADAPTIVE_THREADS=0 starts it
                      False). See docs/threads.md.
    progress_bar      whether a fit shows a progress bar on stderr: None (the default) with
                      `verbose`, as ever; True always; False never (verbose lines still
                      print).

Each thread has its own settings, starting from the process's defaults when it first reads
them, as scikit-learn's: a config_context in one thread does not change another's fits.
"""
from __future__ import annotations

from collections.abc import Iterator

import contextlib
import os
import threading

#: The names a backend setting may take besides "auto": the backends fastmlp has, each
#: registered with its module in backends/__init__.py.
BACKEND_NAMES = ("numpy", "numba", "cython")

_defaults = {"backend": os.environ.get("FASTMLP_BACKEND", "auto") or "auto",
             "adaptive_threads": os.environ.get("FASTMLP_ADAPTIVE_THREADS", "1").strip().lower()
             not in ("0", "false", "no", "off"),
             "progress_bar": None}
_UNSET = object()
_local = threading.local()


def _settings():
    settings = getattr(_local, "settings", None)
    if settings is None:
        settings = _local.settings = dict(_defaults)
    return settings


def _check_backend(name, source):
    if name != "auto" and name not in BACKEND_NAMES:
        raise ValueError(f"{source}={name!r} is not a backend; expected 'auto' or one of "
                         f"{list(BACKEND_NAMES)}")
    return name


def get_config() -> dict[str, object]:
    """Return this thread's settings.

    Returns
    -------
    config : dict
        A new dict, ``{"backend": ..., "adaptive_threads": ..., "progress_bar": ...}`` (see
        `set_config`).
    """
    return dict(_settings())


def set_config(backend: str | None = None, adaptive_threads: bool | None = None,
               progress_bar: bool | None | object = _UNSET) -> None:
    """Change this thread's settings; None leaves a setting as it is (but progress_bar's).

    Parameters
    ----------
    backend : str, default=None
        What `backend="auto"` (estimators, MLP, get_backend) resolves to: "auto" for the
        fastest available backend, or "numpy", "numba", "cython".
    adaptive_threads : bool, default=None
        True: a fit whose n_threads is None runs, at each compiled call, no more threads
        than other processes left free lately (a busy machine would stall its thread team).
        A small network's split minibatch gives the same weights either way; a large one's
        BLAS-threaded products may differ in the last bits. False: always the default
        thread count.
    progress_bar : bool or None, default=unchanged
        Whether a fit shows a progress bar on stderr: None, the bar with `verbose` (as
        scikit-learn's verbose fits print their lines); True, always; False, never (the
        verbose lines still print).
    """
    if progress_bar is not _UNSET:
        if progress_bar is not None and not isinstance(progress_bar, bool):
            raise ValueError(f"progress_bar must be None, True or False, got {progress_bar!r}")
        _settings()["progress_bar"] = progress_bar
    if backend is not None:
        _settings()["backend"] = _check_backend(backend, "backend")
    if adaptive_threads is not None:
        if not isinstance(adaptive_threads, bool):
            raise ValueError(f"adaptive_threads must be True or False, got "
                             f"{adaptive_threads!r}")
        _settings()["adaptive_threads"] = adaptive_threads


@contextlib.contextmanager
def config_context(*, backend: str | None = None, adaptive_threads: bool | None = None,
                   progress_bar: bool | None | object = _UNSET) -> Iterator[None]:
    """Change this thread's settings for the duration of a `with` block.

    The settings before the block are restored after it, however it ends.

    Parameters
    ----------
    backend : str, default=None
        As for `set_config`; None leaves it as it is.
    adaptive_threads : bool, default=None
        As for `set_config`; None leaves it as it is.
    progress_bar : bool or None, default=unchanged
        As for `set_config`.

    Yields
    ------
    None
        The block runs with the settings changed.

    Examples
    --------

    >>> import fastmlp
    >>> with fastmlp.config_context(backend="numpy"):
    ...     fastmlp.get_config()["backend"]
    'numpy'
    """
    old = get_config()
    set_config(backend=backend, adaptive_threads=adaptive_threads, progress_bar=progress_bar)
    try:
        yield
    finally:
        _settings().update(old)


def progress_bar(verbose):
    """Whether a fit with this `verbose` shows a progress bar (this thread's setting)."""
    setting = _settings()["progress_bar"]
    return bool(verbose) if setting is None else setting


def adaptive_threads():
    """Whether default fits adapt their thread count to the machine's load (this thread)."""
    return _settings()["adaptive_threads"]


def configured_backend():
    """The backend name "auto" resolves to under the current settings (checked)."""
    name = _settings()["backend"]
    source = ("FASTMLP_BACKEND" if name == _defaults["backend"] and "FASTMLP_BACKEND"
              in os.environ else "backend")
    return _check_backend(name, source)
