"""The user's defaults, in scikit-learn's style: set_config, get_config, config_context.

    backend   which kernels `backend="auto"` means: "auto" (the fastest available), or a
              backend's name. Starts from the FASTMLP_BACKEND environment variable.

Each thread has its own settings, starting from the process's defaults when it first reads
them, as scikit-learn's: a config_context in one thread does not change another's fits.
"""
import contextlib
import os
import threading

_defaults = {"backend": os.environ.get("FASTMLP_BACKEND", "auto") or "auto"}
_local = threading.local()


def _settings():
    settings = getattr(_local, "settings", None)
    if settings is None:
        settings = _local.settings = dict(_defaults)
    return settings


def _check_backend(name, source):
    from .backends import BACKEND_NAMES

    if name != "auto" and name not in BACKEND_NAMES:
        raise ValueError(f"{source}={name!r} is not a backend; expected 'auto' or one of "
                         f"{list(BACKEND_NAMES)}")
    return name


def get_config():
    """This thread's settings, as a new dict: {"backend": ...}."""
    return dict(_settings())


def set_config(backend=None):
    """Change this thread's settings; None leaves a setting as it is.

    Parameters
    ----------
    backend : str, default=None
        What `backend="auto"` (estimators, MLP, get_backend) resolves to: "auto" for the
        fastest available backend, or "numpy", "numba", "cython".
    """
    if backend is not None:
        _settings()["backend"] = _check_backend(backend, "backend")


@contextlib.contextmanager
def config_context(*, backend=None):
    """Settings for the duration of a `with` block (this thread), restored after it.

    >>> import fastmlp
    >>> with fastmlp.config_context(backend="numpy"):
    ...     fastmlp.get_config()["backend"]
    'numpy'
    """
    old = get_config()
    set_config(backend=backend)
    try:
        yield
    finally:
        _settings().update(old)


def configured_backend():
    """The backend name "auto" resolves to under the current settings (checked)."""
    name = _settings()["backend"]
    source = ("FASTMLP_BACKEND" if name == _defaults["backend"] and "FASTMLP_BACKEND"
              in os.environ else "backend")
    return _check_backend(name, source)
