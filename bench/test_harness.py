"""The lab's harness: its GEMM floors do a fit's steps (every row of every epoch once, in
minibatch order), its report has every contender, `python -m bench --fits-only` writes one."""
import numpy as np
import pytest

import fastmlp
from bench import harness as B
from bench.__main__ import main


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


def test_markdown_report_has_every_contender():
    steps = [dict(workload="W1", dtype="float32", contender=c, us_per_step=v)
             for c, v in [("cython", 1.0), ("numpy", 40.0), ("gemm floor", 4.0)]]
    fits = [dict(problem="digits", dtype="float32", contender=c, fit_s=s, epochs=200,
                 test_score=0.98) for c, s in [("fastmlp-cython", 0.2), ("sklearn", 0.6)]]
    text = B.markdown_report(steps, [], fits, fastmlp.show.config(), "python -m bench")
    assert "| W1 | float32 | cython | 1.00 | 40.00 | 0.25 | - |" in text
    assert "| digits | float32 | fastmlp-cython | 0.200 | 200 | 0.9800 | 3.00 |" in text
    fits = [dict(problem="mnist-shaped", dtype="float64", contender=c, fit_s=s, epochs=2,
                 test_score=0.6) for c, s in [("fastmlp-cython", 1.2), ("sklearn", 3.0),
                                              ("gemm floor", 1.0), ("scipy BLAS floor", 0.8)]]
    text = B.markdown_report([], [], fits, fastmlp.show.config(), "python -m bench")
    assert "| mnist-shaped | float64 | fastmlp-cython | 1.200 | 2 | 0.6000 | 2.50 | - | 1.50 |" in text
    (line,) = [ln.split() for ln in B.fit_text(fits).splitlines() if "fastmlp-cython" in ln]
    assert line[-3:] == ["0.6000", "2.50x", "1.50"]


def test_bench_fits_only_writes_a_fit_report(tmp_path, capsys):
    """`python -m bench --fits-only`: the digits fits side by side, their report, no step plot."""
    out_dir = tmp_path / "fits"
    assert main(["--fits-only", "--dtypes", "float32", "--rounds", "1", "--quiet",
                 "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "sklearn" in out and "workload" not in out
    report = (out_dir / "report.md").read_text()
    assert "| digits | float32 | sklearn |" in report and "| workload |" not in report
    assert (out_dir / "results.json").exists() and not (out_dir / "steps.png").exists()


def test_a_study_refreshes_its_own_section_of_the_report_and_keeps_the_others(tmp_path):
    from bench.__main__ import write_section

    report = tmp_path / "performance.md"
    write_section(report, "main", "# Performance\nsteps v1")
    write_section(report, "sparse", "## Sparse\nsparse v1")
    write_section(report, "main", "# Performance\nsteps v2")
    write_section(report, "dask", "## Dask\ndask v1")
    write_section(report, "sparse", "## Sparse\nsparse v2")
    text = report.read_text()
    assert "steps v1" not in text and "sparse v1" not in text
    assert text.index("steps v2") < text.index("sparse v2") < text.index("dask v1")
    assert text.count("<!-- sparse -->") == text.count("<!-- end sparse -->") == 1
