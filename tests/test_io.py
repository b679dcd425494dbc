"""save/load: identical predictions, clear errors for damaged or foreign files."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
import zipfile

import numpy as np
import pytest
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor, _archive


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
    with pytest.raises(TypeError, match="builtins.object, which fastmlp.save cannot store"):
        fastmlp.save(object(), tmp_path / "x")
    assert not os.listdir(tmp_path)


def _remade(good, path, change_metadata=None, change_arrays=None):
    """A copy of the model file `good` with its metadata and arrays changed and every
    checksum made again: a file whose parts disagree, however it was made."""
    from fastmlp._archive import metadata_digest as _metadata_digest
    from fastmlp._archive import npy_bytes as _npy_bytes
    import hashlib

    with zipfile.ZipFile(good) as src:
        meta = json.loads(src.read("metadata.json"))
        arrays = {name[:-4]: np.load(src.open(name)) for name in src.namelist()
                  if name.endswith(".npy")}
    if change_arrays:
        change_arrays(arrays)
    members = {f"{name}.npy": _npy_bytes(value) for name, value in arrays.items()}
    if change_metadata:
        change_metadata(meta)
    meta["sha256"] = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    meta["metadata_sha256"] = _metadata_digest(meta)
    with zipfile.ZipFile(path, "w") as dst:
        dst.writestr("metadata.json", json.dumps(meta))
        for name, data in members.items():
            dst.writestr(name, data)
    return path


def _with_metadata_text(good, path, change):
    """A copy of the model file `good` whose metadata.json is change(its bytes), nothing
    else touched (its checksums stay as they were)."""
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            payload = src.read(name)
            dst.writestr(name, change(payload) if name == "metadata.json" else payload)
    return path


def _without_digest_as_version_1(text):
    meta = json.loads(text)
    del meta["metadata_sha256"]
    meta["version"] = 1
    return json.dumps(meta)


def test_an_edited_metadata_file_is_detected(tmp_path):
    est, X = _fitted("multiclass")
    good = fastmlp.save(est, tmp_path / "good.fastmlp")
    # one value changed: tanh predicts differently
    edited = _with_metadata_text(good, tmp_path / "edited.fastmlp", lambda text: text.replace(
        b'"activation": "relu"', b'"activation": "tanh"'))
    assert b'"tanh"' in zipfile.ZipFile(edited).read("metadata.json")
    with pytest.raises(ValueError, match="checksum mismatch in metadata.json"):
        fastmlp.load(edited)
    # remade consistently, the same edit loads (and predicts as tanh would)
    remade = _remade(good, tmp_path / "remade.fastmlp",
                     lambda m: m["params"].update(activation="tanh"))
    assert fastmlp.load(remade).activation == "tanh"


def test_a_version_1_file_without_a_metadata_digest_still_loads(tmp_path):
    est, X = _fitted("strings")
    good = fastmlp.save(est, tmp_path / "good.fastmlp")
    old = _with_metadata_text(good, tmp_path / "old.fastmlp", _without_digest_as_version_1)
    np.testing.assert_array_equal(fastmlp.load(old).predict(X), est.predict(X))


INCONSISTENT = {
    "classes shorter than the output layer": (
        None, lambda a: a.update(classes_=a["classes_"][:2]), "label_type 'multiclass'"),
    "a class named twice": (
        None, lambda a: a.update(classes_=np.array([0, 1, 1])), "a label twice"),
    "four classes for three outputs": (
        None, lambda a: a.update(classes_=np.arange(4)), "need 4 softmax outputs"),
    "binary label type on softmax": (
        lambda m: m.update(label_type="binary"), None, "2 classes|3 classes"),
    "no classes": (None, lambda a: a.pop("classes_"), "needs a 1-D, non-empty classes_"),
    "n_features_in_ off by one": (
        lambda m: m["attributes"].update(n_features_in_=4), None, r"make \[4, 6, 4, 3\]"),
    "hidden sizes against layer sizes": (
        lambda m: m["params"].update(hidden_layer_sizes=[6, 5]), None, "layer_sizes"),
    "n_layers_": (lambda m: m["attributes"].update(n_layers_=3), None, "n_layers_ is 3"),
    "an unknown attribute": (
        lambda m: m["attributes"].update(predict=0), None, r"unknown attributes \['predict'\]"),
    "an unknown parameter": (
        lambda m: m["params"].update(gamma=1), None, r"no parameters \['gamma'\]"),
    "a bad parameter value": (
        lambda m: m["params"].update(alpha=-1), None, "alpha"),
    "a classifier's file relabelled a regressor": (
        lambda m: (m.update(estimator="MLPRegressor"), m["params"].pop("class_weight")), None,
        "regressor with classes_"),
    "softmax on a regressor": (
        lambda m: (m.update(estimator="MLPRegressor"), m["params"].pop("class_weight")),
        lambda a: a.pop("classes_"), "out_activation_ is 'softmax'"),
    "feature names of the wrong length": (
        None, lambda a: a.update(feature_names_in_=np.array(["a", "b"])), "feature_names_in_"),
    "a missing n_outputs_": (
        lambda m: m["attributes"].pop("n_outputs_"), None, "n_outputs_ is None"),
    "float16": (lambda m: m.update(dtype="float16"), None, "float16"),
}


@pytest.mark.parametrize("case", INCONSISTENT)
def test_a_file_whose_fields_disagree_is_refused(tmp_path, case):
    change_metadata, change_arrays, message = INCONSISTENT[case]
    est, X = _fitted("multiclass")
    good = fastmlp.save(est, tmp_path / "good.fastmlp")
    bad = _remade(good, tmp_path / "bad.fastmlp", change_metadata, change_arrays)
    with pytest.raises(ValueError, match=message) as info:
        fastmlp.load(bad)
    assert "is inconsistent" in str(info.value)


def test_save_writes_through_a_symlink_and_refuses_what_is_not_a_file(tmp_path):
    est, X = _fitted("multiclass")
    real = tmp_path / "models" / "real.fastmlp"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "link.fastmlp"
    link.symlink_to(real)
    fastmlp.save(est, link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    np.testing.assert_array_equal(fastmlp.load(real).predict(X), est.predict(X))
    assert sorted(p.name for p in real.parent.iterdir()) == ["real.fastmlp"]

    directory = tmp_path / "a_directory"
    directory.mkdir()
    fifo = tmp_path / "a_fifo"
    os.mkfifo(fifo)
    to_device = tmp_path / "to_device"
    to_device.symlink_to("/dev/null")
    for target in (directory, fifo, to_device, "/dev/null"):
        with pytest.raises(ValueError, match="not a regular file"):
            fastmlp.save(est, target)
    assert os.path.isdir(directory) and os.path.islink(to_device)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_save_honours_the_umask_and_keeps_a_replaced_files_mode(tmp_path):
    import stat

    est, _ = _fitted("regressor")
    old = os.umask(0o027)
    try:
        fresh = fastmlp.save(est, tmp_path / "fresh.fastmlp")
        open_made = tmp_path / "open_made"
        open_made.write_bytes(b"")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == stat.S_IMODE(os.stat(open_made).st_mode)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o640
    os.chmod(fresh, 0o604)
    fastmlp.save(est, fresh)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o604


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_save_leaves_the_old_file(tmp_path, monkeypatch, error):
    est, X = _fitted("multiclass")
    path = tmp_path / "model.fastmlp"
    fastmlp.save(est, path)
    before = path.read_bytes()
    writes = []

    def fail_on_the_second_member(self, name, data, *args, **kwargs):
        writes.append(name)
        if len(writes) == 2:
            raise error
        return original(self, name, data, *args, **kwargs)

    original = zipfile.ZipFile.writestr
    monkeypatch.setattr(zipfile.ZipFile, "writestr", fail_on_the_second_member)
    with pytest.raises(type(error)):
        fastmlp.save(est, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.fastmlp"]


@pytest.mark.parametrize("name", ["model.fastmlp", "model@v2 (1).fastmlp"])
def test_save_removes_the_temporaries_that_killed_saves_left(tmp_path, name):
    """A temporary of the same target, old and locked by no one, is a killed save's: removed.
    A recent one, a locked one (a save under way elsewhere) and another target's stay."""
    est, _ = _fitted("multiclass")
    path = tmp_path / name
    old = time.time() - 2 * _archive.STALE_SECONDS

    def temporary(name, age):
        made = tmp_path / name
        made.write_bytes(b"half a model")
        os.utime(made, (age, age))
        return made

    stale = temporary(f".{name}.0123456789ab.tmp", old)
    recent = temporary(f".{name}.123456789abc.tmp", time.time())
    locked = temporary(f".{name}.23456789abcd.tmp", old)
    other = temporary(".other.fastmlp.3456789abcde.tmp", old)
    unlike = temporary(f".{name}.not-a-token.tmp", old)
    with open(locked, "rb") as held:
        fcntl = pytest.importorskip("fcntl")
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        fastmlp.save(est, path)
    assert not stale.exists()
    assert recent.exists() and locked.exists() and other.exists() and unlike.exists()
    assert isinstance(fastmlp.load(path), MLPClassifier)


SAVE_FOREVER = r"""
import sys, warnings
import numpy as np
import fastmlp
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X, y = rng.normal(size=(50, 300)), rng.integers(0, 3, 50)
est = fastmlp.MLPClassifier((1000, 1000), max_iter=1, random_state=0).fit(X, y)
path = sys.argv[1]
fastmlp.save(est, path)
print("saved", flush=True)
while True:
    fastmlp.save(est, path)
"""


@pytest.mark.process
def test_sigterm_during_a_save_ends_the_process_and_leaves_no_temporary(tmp_path):
    """A child saves a 10 MB model over and over; SIGTERM at three moments. Each time the
    process ends by SIGTERM, the file at the path loads, and no temporary is left."""
    path = tmp_path / "model.fastmlp"
    for delay in (0.05, 0.13, 0.31):
        child = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "saved\n", child.stderr.read()
        time.sleep(delay)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == -signal.SIGTERM, child.stderr.read()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fastmlp"], delay
        assert isinstance(fastmlp.load(path), MLPClassifier)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_a_pickle_holds_the_model_not_the_training_workspace(solver):
    """Within 1.5x of scikit-learn's pickle of the same network, and an unpickled model
    trains on (warm start) exactly as the original does."""
    from sklearn.neural_network import MLPClassifier as SkClassifier

    X, y = datasets.load_digits(return_X_y=True)
    X = X / 16
    kw = dict(hidden_layer_sizes=(24,), solver=solver, max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(X, y)
        theirs = SkClassifier(**kw).fit(X, y)
        ours_bytes, their_bytes = pickle.dumps(ours), pickle.dumps(theirs)
        assert len(ours_bytes) <= 1.5 * len(their_bytes), (len(ours_bytes), len(their_bytes))
        again = pickle.loads(ours_bytes)
        assert hasattr(ours, "coefs_")  # pickling did not touch the live estimator
        for model in (ours, again):
            model.set_params(warm_start=True, max_iter=5).fit(X, y)
    for a, b in zip(again.coefs_ + again.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert again.n_iter_ == ours.n_iter_ and again.loss_ == ours.loss_
    assert getattr(again, "loss_curve_", None) == getattr(ours, "loss_curve_", None)


def test_an_adamw_model_saves_loads_and_keeps_training(tmp_path):
    """solver="adamw" and weight_decay survive save/load; the loaded model predicts the same
    and partial_fit goes on with adamw (its moments start afresh, as after any load)."""
    X, y = datasets.load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(solver="adamw", weight_decay=0.3, max_iter=20,
                              random_state=0).fit(X, y)
    loaded = fastmlp.load(fastmlp.save(model, tmp_path / "adamw.fastmlp"))
    assert (loaded.solver, loaded.weight_decay) == ("adamw", 0.3)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    before = loaded.coefs_[0].copy()
    loaded.partial_fit(X, y)
    assert loaded.n_iter_ == 1 and not np.array_equal(loaded.coefs_[0], before)
