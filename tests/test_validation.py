"""The input check's shortcut: an array check_array would return unchanged skips it, and
everything else gets check_array's own answer — the same array or the same error."""
import numpy as np
import pytest
from sklearn.utils import check_array

from fastmlp._validation import check_matrix

F32 = np.arange(12, dtype=np.float32).reshape(3, 4)
BIG = np.full((2, 3), 3e38, np.float32)  # finite, but its float32 sum overflows


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _with(value):
    a = F32.copy()
    a[1, 2] = value
    return a


CASES = {
    "ready": (F32, np.float32),
    "read-only": (_readonly(F32), np.float32),
    "sum overflows": (BIG, np.float32),
    "Fortran order": (np.asfortranarray(F32), np.float32),
    "strided": (np.zeros((3, 8), np.float32)[:, ::2], np.float32),
    "other float dtype": (F32, np.float64),
    "ints": (np.ones((2, 3), np.int64), np.float32),
    "NaN": (_with(np.nan), np.float32),
    "inf": (_with(np.inf), np.float32),
    "-inf": (_with(-np.inf), np.float32),
    "NaN in float64": (_with(np.nan).astype(np.float64), np.float64),
    "no rows": (np.empty((0, 4), np.float32), np.float32),
    "no columns": (np.empty((3, 0), np.float32), np.float32),
    "1-D": (np.ones(4, np.float32), np.float32),
    "np.matrix": (np.asmatrix(F32), np.float32),
    "nested lists": ([[1.0, 2.0], [3.0, 4.0]], np.float32),
}


@pytest.mark.parametrize("case", CASES)
def test_check_matrix_answers_as_check_array(case):
    a, dtype = CASES[case]
    try:
        expected = check_array(a, dtype=dtype, order="C", ensure_all_finite=True,
                               input_name="X")
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)) as caught:
            check_matrix(a, "X", dtype)
        assert str(caught.value) == str(exc)
        return
    got = check_matrix(a, "X", dtype)
    assert type(got) is np.ndarray and got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    assert (got is a) == (expected is a)  # no copy where check_array makes none


def test_an_empty_matrix_passes_where_it_is_allowed():
    empty = np.empty((0, 4), np.float32)
    assert check_matrix(empty, "X", np.float32, allow_empty=True) is empty
