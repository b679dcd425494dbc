"""save/load: identical predictions, clear errors for damaged or foreign files."""
import json
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor


def _fitted(kind, dtype=np.float64):
    X, y = datasets.load_iris(return_X_y=True)
    X = X.astype(dtype)
    if kind == "strings":
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    if kind == "binary":
        y = (y == 2).astype(int)
    if kind == "multilabel":
        y = np.c_[y == 0, y == 1, X[:, 0] > 5.5].astype(int)
    est = (MLPRegressor if kind == "regressor" else MLPClassifier)(
        hidden_layer_sizes=(6, 4), max_iter=20, random_state=0,
        class_weight="balanced" if kind == "binary" else None) if kind != "regressor" else \
        MLPRegressor(hidden_layer_sizes=(6,), max_iter=20, random_state=0)
    target = X[:, 0] if kind == "regressor" else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[:, 1:], target)
    return est, X[:, 1:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["multiclass", "strings", "binary", "multilabel", "regressor"])
def test_save_load_gives_identical_predictions(tmp_path, kind, dtype):
    est, X = _fitted(kind, dtype)
    path = fastmlp.save(est, tmp_path / "model.fastmlp")
    again = fastmlp.load(path)
    assert type(again) is type(est) and again.get_params() == est.get_params()
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    if kind != "regressor":
        np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
        np.testing.assert_array_equal(again.classes_, est.classes_)
    assert again.coefs_[0].dtype == dtype
    assert again.loss_curve_ == est.loss_curve_ and again.n_iter_ == est.n_iter_
    # pickling the estimator still works as for any scikit-learn estimator
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict(X), est.predict(X))


def test_damaged_and_foreign_files_raise_clear_errors(tmp_path):
    est, _ = _fitted("multiclass")
    good = fastmlp.save(est, tmp_path / "good.fastmlp")
    data = open(good, "rb").read()

    truncated = tmp_path / "truncated.fastmlp"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated|damaged|not a fastmlp"):
        fastmlp.load(truncated)

    altered = tmp_path / "altered.fastmlp"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(altered, "w") as dst:
        for name in src.namelist():
            payload = src.read(name)
            if name == "theta.npy":
                payload = payload[:-8] + np.float64(3.0).tobytes()
            dst.writestr(name, payload)
    with pytest.raises(ValueError, match="checksum mismatch in theta.npy"):
        fastmlp.load(altered)

    def rewrite(path, change):
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
            for name in src.namelist():
                payload = src.read(name)
                if name == "metadata.json":
                    meta = json.loads(payload)
                    change(meta)
                    payload = json.dumps(meta)
                dst.writestr(name, payload)
        return path

    newer = rewrite(tmp_path / "newer.fastmlp", lambda m: m.update(version=99))
    with pytest.raises(ValueError, match="format version 99"):
        fastmlp.load(newer)
    foreign = rewrite(tmp_path / "foreign.fastmlp", lambda m: m.update(format="other"))
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.load(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.load(text)


def test_save_is_atomic(tmp_path, monkeypatch):
    est, X = _fitted("multiclass")
    path = tmp_path / "model.fastmlp"
    fastmlp.save(est, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", crash)
    with pytest.raises(OSError, match="disk full"):
        fastmlp.save(est, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.fastmlp"]  # no temp file left


def test_save_rejects_unfitted_and_foreign_objects(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        fastmlp.save(MLPClassifier(), tmp_path / "x")
    with pytest.raises(TypeError, match="takes a fastmlp"):
        fastmlp.save(object(), tmp_path / "x")
    assert not os.listdir(tmp_path)
