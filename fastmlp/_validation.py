"""Input checks for the public Python API (model and estimators), before any kernel runs."""
import numpy as np
from sklearn.utils import check_array

from .backends._checks import is_sparse, sparse_input

FLOAT_DTYPES = (np.float32, np.float64)


def check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_matrix(a, name, dtype, n_cols=None, allow_empty=False, accept_sparse=False):
    """2-D finite float array of `dtype`, C-contiguous; ints/bools cast, object/str/complex
    rejected. accept_sparse: a scipy.sparse matrix or array of any format is kept sparse, as
    the kernels take it (CSR: _checks.sparse_input)."""
    if _ready(a, dtype, allow_empty):
        if n_cols is not None and a.shape[1] != n_cols:
            raise ValueError(f"{name} has {a.shape[1]} columns, expected {n_cols}")
        return a
    with np.errstate(invalid="ignore", over="ignore"):  # scikit-learn's sum test of inf-inf
        a = check_array(a, dtype=dtype, order="C", ensure_all_finite=True,
                        accept_sparse="csr" if accept_sparse else False,
                        ensure_min_samples=0 if allow_empty else 1, input_name=name)
    if is_sparse(a):
        return sparse_input(a, name, n_cols, dtype)
    if n_cols is not None and a.shape[1] != n_cols:
        raise ValueError(f"{name} has {a.shape[1]} columns, expected {n_cols}")
    return a


def _ready(a, dtype, allow_empty):
    """True if `a` is what check_array would return unchanged — a non-empty, C-contiguous
    2-D ndarray of `dtype` whose sum is finite, so every element is (scikit-learn's own first
    test) — so the call can be skipped: it is most of a small train_epoch call's cost
    (online learning). Anything else, a NaN included, goes through check_array, which
    raises scikit-learn's own errors."""
    if not (type(a) is np.ndarray and a.dtype == dtype and a.ndim == 2
            and a.flags.c_contiguous and a.shape[1] > 0 and (allow_empty or a.shape[0] > 0)):
        return False
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.isfinite(a.sum()))


def check_targets(Y, n_rows, n_outputs, dtype):
    if _ready(Y, dtype, False) and Y.shape == (n_rows, n_outputs):
        return Y  # what the checks below would return unchanged (a small call's budget)
    Y = np.asarray(Y) if not hasattr(Y, "iloc") else Y
    if getattr(Y, "ndim", 2) == 1:
        Y = np.asarray(Y).reshape(-1, 1)
    Y = check_matrix(Y, "Y", dtype, n_outputs)
    if Y.shape[0] != n_rows:
        raise ValueError(f"X has {n_rows} rows but Y has {Y.shape[0]}")
    return Y


def check_sample_weight(sample_weight, n_rows, dtype):
    if sample_weight is None:
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        w = check_array(sample_weight, dtype=dtype, ensure_2d=False, ensure_all_finite=True,
                        input_name="sample_weight")
    if w.shape != (n_rows,):
        raise ValueError(f"sample_weight has shape {w.shape}, expected ({n_rows},)")
    if not np.sum(w, dtype=np.float64) > 0:  # negative weights count against, as sklearn's
        raise ValueError("sample_weight must have a positive sum")
    return np.ascontiguousarray(w)
