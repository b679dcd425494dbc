"""Which BLAS the cython kernels' GEMMs call: SciPy's (scipy.linalg.cython_blas) or NumPy's.

NumPy and SciPy wheels each bundle their own OpenBLAS, often of different versions, and
their GEMMs differ in speed (`python -m bench` shows both floors side by side). NumPy's
bundled OpenBLAS (scipy-openblas64) exports ILP64 Fortran GEMMs, `scipy_sgemm_64_` and
`scipy_dgemm_64_`, that the cython kernels can call through a function pointer in place of
cython_blas's. Numba's kernels call SciPy's BLAS in every case (numba's own np.dot binding).

FASTMLP_BLAS, read when the cython backend is first imported, chooses for the process:

    auto   (the default) NumPy's when both are OpenBLAS and NumPy's is the newer release
           (newer releases bring newer GEMM kernels); SciPy's otherwise
    numpy  NumPy's; an error if NumPy's BLAS does not export those GEMMs
    scipy  SciPy's

The choice is per process, not per fit: the two libraries' sums may differ in the last bits,
and a fit's results are bitwise reproducible only with one library.
"""
from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass

CHOICES = ("auto", "numpy", "scipy")
_NAMES = {"numpy": "NumPy", "scipy": "SciPy"}
#: NumPy's scipy-openblas64 build: its symbols' prefix and ILP64 suffix.
_NUMPY_GEMMS = ("scipy_sgemm_64_", "scipy_dgemm_64_")
_NUMPY_CONFIG = "scipy_openblas_get_config64_"
_SCIPY_CONFIG = ("scipy_openblas_get_config", "openblas_get_config")


@dataclass(frozen=True)
class Choice:
    library: str               # "numpy" or "scipy": whose GEMMs the cython kernels call
    reason: str                # why, for show_config and the bench report
    sgemm: int = 0             # NumPy's ILP64 GEMM addresses (0: SciPy's, through cython_blas)
    dgemm: int = 0

    def describe(self):
        return f"{_NAMES[self.library]}'s BLAS ({self.reason})"


def _symbol(handle, name):
    try:
        return ctypes.cast(getattr(handle, name), ctypes.c_void_p).value
    except AttributeError:
        return None


def _openblas_version(handle, names):
    """(version tuple, text) of the OpenBLAS whose get_config one of `names` is, or None.
    dlsym on an extension module's handle also searches the libraries it links."""
    for name in names:
        if _symbol(handle, name) is None:
            continue
        get_config = getattr(handle, name)
        get_config.restype = ctypes.c_char_p
        match = re.match(rb"OpenBLAS (\d+(?:\.\d+)*)", get_config() or b"")
        if match:
            text = match.group(1).decode()
            release = tuple(int(part) for part in text.split(".")[:3])  # not build numbers
            return release, text
    return None


def _handle(module):
    try:
        return ctypes.CDLL(module.__file__)
    except OSError:
        return None


def numpy_gemms():
    """(sgemm, dgemm addresses, OpenBLAS version or None) of NumPy's BLAS, or None when it
    does not export the ILP64 GEMMs (an MKL or Accelerate NumPy, a source build)."""
    import numpy as np

    handle = _handle(np._core._multiarray_umath)
    if handle is None:
        return None
    addresses = [_symbol(handle, name) for name in _NUMPY_GEMMS]
    if None in addresses:
        return None
    return (*addresses, _openblas_version(handle, (_NUMPY_CONFIG,)))


def scipy_version():
    """The OpenBLAS version of SciPy's BLAS (the one cython_blas binds), or None."""
    from scipy.linalg import cython_blas

    handle = _handle(cython_blas)
    return None if handle is None else _openblas_version(handle, _SCIPY_CONFIG)


def choose(setting=None, numpy=None, scipy=None):
    """The Choice for `setting` (default: FASTMLP_BLAS, else "auto"), given numpy_gemms() and
    scipy_version() (default: this process's; False: absent)."""
    if setting is None:
        setting = os.environ.get("FASTMLP_BLAS", "")
    setting = setting.strip().lower() or "auto"
    if setting not in CHOICES:
        raise ValueError(f"FASTMLP_BLAS={setting!r}: expected one of {list(CHOICES)}")
    if setting == "scipy":
        return Choice("scipy", "FASTMLP_BLAS=scipy")
    numpy = numpy_gemms() if numpy is None else numpy
    if setting == "numpy":
        if not numpy:
            raise ValueError("FASTMLP_BLAS=numpy, but NumPy's BLAS does not export the ILP64 "
                             f"GEMMs {list(_NUMPY_GEMMS)} (not a scipy-openblas64 build); "
                             "unset it or use FASTMLP_BLAS=scipy")
        return Choice("numpy", "FASTMLP_BLAS=numpy", numpy[0], numpy[1])
    if not numpy:
        return Choice("scipy", "NumPy's BLAS exports no ILP64 GEMMs")
    scipy = scipy_version() if scipy is None else scipy
    if numpy[2] is None or not scipy:
        return Choice("scipy", "not both OpenBLAS of known versions")
    (numpy_release, numpy_text), (scipy_release, scipy_text) = numpy[2], scipy
    if numpy_release > scipy_release:
        return Choice("numpy", f"OpenBLAS {numpy_text}, newer than SciPy's {scipy_text}",
                      numpy[0], numpy[1])
    return Choice("scipy", f"OpenBLAS {scipy_text}, NumPy's is {numpy_text}")
