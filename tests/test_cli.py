"""The `fastmlp` command: train on a CSV and save, config, bench reports."""
import csv

import pytest
from sklearn.datasets import load_iris

import fastmlp
from fastmlp.cli import main


def test_train_on_a_csv_saves_a_model_that_loads(tmp_path, capsys):
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "iris.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "c", "d", "species"])
        for row, label in zip(X, y):
            writer.writerow([*row, ["setosa", "versicolor", "virginica"][label]])
    model = tmp_path / "iris.fastmlp"
    assert main(["train", "--csv", str(path), "--target", "species", "--max-iter", "30",
                 "--quiet", "--no-compare", "--save", str(model)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "saved to" in out
    est = fastmlp.load(model)
    assert set(est.classes_) == {"setosa", "versicolor", "virginica"} and est.n_iter_ == 30


def test_train_rejects_a_missing_column_and_a_lone_csv_or_target(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(SystemExit, match="no column 'label'"):
        main(["train", "--csv", str(path), "--target", "label"])
    for args in (["--csv", str(path)], ["--target", "a"]):  # the rule, not a later failure
        with pytest.raises(SystemExit) as exit_info:
            main(["train", *args, "--max-iter", "1", "--quiet", "--no-compare"])
        assert exit_info.value.code == 2
        assert "--csv and --target go together" in capsys.readouterr().err


def test_config_lists_the_backends(capsys):
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "backends" in out and fastmlp.get_backend("auto").name in out


def test_markdown_report_has_every_contender():
    from fastmlp import benchmarking as B

    steps = [dict(workload="W1", dtype="float32", contender=c, us_per_step=v)
             for c, v in [("cython", 1.0), ("numpy", 40.0), ("gemm floor", 4.0)]]
    fits = [dict(problem="digits", dtype="float32", contender=c, fit_s=s, epochs=200,
                 test_score=0.98) for c, s in [("fastmlp-cython", 0.2), ("sklearn", 0.6)]]
    text = B.markdown_report(steps, [], fits, fastmlp.show.config(), "fastmlp bench")
    assert "| W1 | float32 | cython | 1.00 | 40.00 | 0.25 | - |" in text
    assert "| digits | float32 | fastmlp-cython | 0.200 | 200 | 0.9800 | 3.00 |" in text


def test_bench_fits_only_writes_a_fit_report(tmp_path, capsys):
    """`fastmlp bench --fits-only`: the digits fits side by side, their report, no step plot."""
    out_dir = tmp_path / "fits"
    assert main(["bench", "--fits-only", "--dtypes", "float32", "--rounds", "1", "--quiet",
                 "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "sklearn" in out and "workload" not in out
    report = (out_dir / "report.md").read_text()
    assert "| digits | float32 | sklearn |" in report and "| workload |" not in report
    assert (out_dir / "results.json").exists() and not (out_dir / "steps.png").exists()
