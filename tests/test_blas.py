"""Which BLAS the cython kernels' GEMMs call (backends/_blas.py), and that either is right.

choose()'s rules are tested on made-up libraries; the kernels are run under each library
this process has, against the reference, and a counting GEMM proves the chosen pointer is
the one called.
"""
import ctypes

import numpy as np
import pytest
from helpers import DTYPES, problem, tol

from fastmlp import MLP
from fastmlp.backends import _blas, reference

cython_backend = pytest.importorskip("fastmlp.backends.cython_backend")
_ck = cython_backend._ck

OLD, NEW = ((0, 3, 30), "0.3.30"), ((0, 3, 31), "0.3.31.188.0")
NUMPY_NEW = (11, 22, NEW)   # fake (sgemm, dgemm, version) of NumPy's BLAS
NUMPY_OLD = (11, 22, OLD)


@pytest.mark.parametrize("setting,numpy,scipy,library", [
    ("auto", NUMPY_NEW, OLD, "numpy"),
    ("auto", NUMPY_OLD, OLD, "scipy"),                    # equal: SciPy's, the historical one
    ("auto", (11, 22, OLD), NEW, "scipy"),                # older
    ("auto", False, OLD, "scipy"),                        # no ILP64 GEMMs exported
    ("auto", (11, 22, None), OLD, "scipy"),               # NumPy's version unknown
    ("auto", NUMPY_NEW, False, "scipy"),                  # SciPy's not OpenBLAS
    ("numpy", NUMPY_OLD, NEW, "numpy"),
    ("scipy", NUMPY_NEW, OLD, "scipy"),
    (" Scipy ", NUMPY_NEW, OLD, "scipy"),
])
def test_choose_follows_its_rules(setting, numpy, scipy, library):
    choice = _blas.choose(setting, numpy=numpy, scipy=scipy)
    assert choice.library == library
    assert (choice.sgemm, choice.dgemm) == ((11, 22) if library == "numpy" else (0, 0))
    assert choice.describe().startswith({"numpy": "NumPy's BLAS (", "scipy": "SciPy's BLAS ("}[library])


def test_choose_reads_the_environment(monkeypatch):
    monkeypatch.setenv("FASTMLP_BLAS", "scipy")
    assert _blas.choose(numpy=NUMPY_NEW, scipy=OLD).library == "scipy"
    monkeypatch.setenv("FASTMLP_BLAS", "")
    assert _blas.choose(numpy=NUMPY_NEW, scipy=OLD).library == "numpy"


@pytest.mark.parametrize("setting,numpy,match", [("mkl", NUMPY_NEW, "expected one of"),
                                                 ("numpy", False, "does not export")])
def test_choose_rejects_what_it_cannot_do(setting, numpy, match):
    with pytest.raises(ValueError, match=match):
        _blas.choose(setting, numpy=numpy, scipy=OLD)


def test_this_process_reads_both_libraries():
    """What auto decides from on this installation: SciPy's version is known, and NumPy's
    GEMMs, when exported, are real symbols with a version."""
    assert _blas.scipy_version() is not None
    numpy = _blas.numpy_gemms()
    if numpy is not None:
        assert numpy[0] and numpy[1] and numpy[2] is not None
    assert cython_backend.blas == _blas.choose()


def _libraries():
    found = [("scipy", 0, 0)]
    numpy = _blas.numpy_gemms()
    if numpy is not None:
        found.append(("numpy", numpy[0], numpy[1]))
    return found


@pytest.fixture
def restore_blas():
    yield
    _ck.use_ilp64_gemm(cython_backend.blas.sgemm, cython_backend.blas.dgemm)


@pytest.mark.parametrize("library,sgemm,dgemm", _libraries(), ids=[l[0] for l in _libraries()])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_the_kernels_match_the_reference_under_each_library(restore_blas, library, sgemm,
                                                             dgemm, dtype):
    _ck.use_ilp64_gemm(sgemm, dgemm)
    rng = np.random.default_rng(0)
    n, n_in, n_out = 300, 257, 129  # well past the small-loop switch: GEMMs do the work
    A = rng.normal(size=(n, n_in)).astype(dtype)
    W = (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    args = (A, W, b, "relu")
    np.testing.assert_allclose(cython_backend.backend.forward_layer(*args, np.empty((n, n_out), dtype)),
                               reference.forward_layer(*args, np.empty((n, n_out), dtype)),
                               **tol(dtype))
    sizes = [64, 256, 128, 10]
    ref, net = (MLP(sizes, dtype=dtype, backend=b, random_state=0) for b in ("numpy", "cython"))
    X, Y = problem(1, 512, sizes, dtype=dtype)
    for _ in range(2):
        kw = dict(batch_size=128, optimizer="adam", learning_rate=1e-3)
        assert net.train_epoch(X, Y, **kw) == pytest.approx(ref.train_epoch(X, Y, **kw),
                                                            rel=50 * tol(dtype)["rtol"])
    np.testing.assert_allclose(net.theta, ref.theta, rtol=50 * tol(dtype)["rtol"],
                               atol=50 * tol(dtype)["atol"])


GEMM64 = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)


@pytest.mark.skipif(_blas.numpy_gemms() is None, reason="NumPy's BLAS exports no ILP64 GEMMs")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_the_kernels_call_the_gemm_they_are_given(restore_blas, dtype):
    """A counting GEMM that forwards to NumPy's: the kernels call it, with 64-bit sizes, and
    get its results; set back to 0, they no longer call it."""
    sgemm, dgemm, _ = _blas.numpy_gemms()
    real = GEMM64(dgemm if dtype == np.float64 else sgemm)
    calls = []

    @GEMM64
    def counting(*args):
        m, n, k = (ctypes.cast(p, ctypes.POINTER(ctypes.c_int64)).contents.value
                   for p in args[2:5])
        calls.append((m, n, k))
        real(*args)

    address = ctypes.cast(counting, ctypes.c_void_p).value
    _ck.use_ilp64_gemm(*((0, address) if dtype == np.float64 else (address, 0)))
    rng = np.random.default_rng(2)
    A, W = rng.normal(size=(200, 96)).astype(dtype), rng.normal(size=(96, 80)).astype(dtype)
    b = np.zeros(80, dtype)
    out = cython_backend.backend.forward_layer(A, W, b, "identity", np.empty((200, 80), dtype))
    assert calls and all(sorted(c) == [80, 96, 200] for c in calls)
    np.testing.assert_allclose(out, A @ W, **tol(dtype, 10))
    _ck.use_ilp64_gemm(0, 0)
    calls.clear()
    cython_backend.backend.forward_layer(A, W, b, "identity", np.empty((200, 80), dtype))
    assert calls == []
