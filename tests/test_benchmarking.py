"""The bench's GEMM floors do a fit's steps: every row of every epoch once, in minibatch order."""
import numpy as np
import pytest

from fastmlp import benchmarking as B


def recording_floor(seen):
    """A floor in gemm_floor's shape that records the row ids (column 0) each step reads."""
    def floor(workload, dtype, X, Y, rows=None):
        lo, hi = rows or (0, workload.batch)

        def run():
            for s in range(workload.steps):
                seen.append(X[s * workload.batch + lo:s * workload.batch + hi, 0].copy())
        return run
    return floor


@pytest.mark.parametrize("n, batch", [(1347, 200), (1000, 200), (7, 200), (201, 200)])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_a_floor_fit_reads_every_row_once_per_epoch(n, batch, parts):
    X = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 4))
    seen = []
    B._FloorFit(recording_floor(seen), (4, 3, 2), batch, 2, X, parts).fit(X, None)
    ids = np.sort(np.concatenate(seen))
    np.testing.assert_array_equal(ids, np.repeat(np.arange(n), 2))
    steps = 2 * -(-n // batch)
    assert len(seen) == steps * parts


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fit_floors_run_their_gemms(dtype):
    X = np.random.default_rng(0).random((450, 64)).astype(dtype)
    floors = B.fit_floors((64, 100, 10), 200, 2, X)
    assert tuple(floors) == B.FIT_FLOORS
    for make in floors.values():
        est = make().fit(X, None)
        assert est.n_iter_ == 2 and np.isnan(est.score(X, None))
