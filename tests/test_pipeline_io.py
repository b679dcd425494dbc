"""save / load of a Pipeline of fastmlp estimators and scikit-learn's preprocessing: the
loaded model predicts, transforms and trains on exactly as the saved one; a step that cannot
be stored is named; an altered file is refused."""
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (FunctionTransformer, MaxAbsScaler, MinMaxScaler,
                                   OneHotEncoder, PolynomialFeatures, RobustScaler,
                                   StandardScaler)

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor


def frame(n=120, seed=0):
    """A small messy table: numbers with gaps, text categories with gaps, a numeric code."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "length": rng.normal(40, 5, n), "width": rng.normal(10, 2, n),
        "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n).astype(object),
        "sex": rng.choice(["f", "m"], n).astype(object),
        "code": rng.choice([3, 7, 11], n)})
    X.loc[::7, "length"] = np.nan
    X.loc[::5, "sex"] = np.nan
    y = np.where(X["island"] == "Dream", "a", np.where(X["width"] > 10, "b", "c"))
    return X, y, X["width"].to_numpy() * 3 + rng.normal(0, 1, n)


def fresh_rows():
    """Rows unlike the training ones: an unseen category, gaps everywhere."""
    X, _, _ = frame(30, seed=1)
    X.loc[0, "island"] = "Atlantis"
    X.loc[1, ["length", "width"]] = np.nan
    X.loc[2, "code"] = 5
    return X


def columns(**kw):
    numeric = Pipeline([("impute", SimpleImputer(strategy="mean")),
                        ("scale", StandardScaler())])
    text = Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                     ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    return ColumnTransformer([("numeric", numeric, ["length", "width"]),
                              ("text", text, ["island", "sex"]),
                              ("code", OneHotEncoder(drop="first", handle_unknown="ignore",
                                                     sparse_output=False), ["code"])], **kw)


MODELS = {
    "classifier": lambda: Pipeline([("pre", columns()),
                                    ("mlp", MLPClassifier((7,), max_iter=20, random_state=0))]),
    "regressor, target scaled": lambda: Pipeline([
        ("pre", columns()), ("mlp", TransformedTargetRegressor(
            MLPRegressor(hidden_layer_sizes=(5,), max_iter=20, random_state=0), transformer=StandardScaler()))]),
    "target scaled around a pipeline": lambda: TransformedTargetRegressor(
        Pipeline([("pre", columns()), ("mlp", MLPRegressor(hidden_layer_sizes=(5,), max_iter=20,
                                                           random_state=0))]),
        transformer=MinMaxScaler()),
    "scalers, remainder passed through": lambda: Pipeline([
        ("pre", ColumnTransformer([("a", MaxAbsScaler(), ["length"]),
                                   ("b", RobustScaler(), ["width"]),
                                   ("c", "drop", ["sex"]),
                                   ("d", OneHotEncoder(drop="if_binary", sparse_output=False,
                                                       handle_unknown="ignore",
                                                       dtype=np.float32), ["island"])],
                                  remainder="passthrough")),
        ("impute", SimpleImputer(strategy="constant", fill_value=-1.0)),
        ("mlp", MLPClassifier((4,), max_iter=10, random_state=0))]),
    "columns by position, a remainder step": lambda: Pipeline([
        ("pre", ColumnTransformer([("n", SimpleImputer(strategy="median"), [0, 1])],
                                  remainder=MinMaxScaler())),
        ("mlp", MLPRegressor(hidden_layer_sizes=(3,), max_iter=10, random_state=0))]),
}


def fitted(kind):
    X, y, target = frame()
    model = MODELS[kind]()
    numeric = kind.startswith("columns by position")
    X = X[["length", "width", "code"]].to_numpy(float) if numeric else X
    model.fit(X, target if "regress" in kind or "target" in kind or numeric else y)
    return model, X, y, target


@pytest.mark.parametrize("kind", list(MODELS))
def test_a_loaded_pipeline_predicts_exactly_as_the_saved_one(tmp_path, kind):
    model, X, _, _ = fitted(kind)
    path = fastmlp.save(model, tmp_path / "m.fastmlp")
    loaded = fastmlp.load(path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    rows = fresh_rows()
    rows = rows[["length", "width", "code"]].to_numpy(float) if isinstance(X, np.ndarray) else rows
    for data in (X, rows):
        np.testing.assert_array_equal(loaded.predict(data), model.predict(data))
        if hasattr(model, "predict_proba"):
            np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))
        if hasattr(model, "steps"):
            np.testing.assert_array_equal(model[:-1].transform(data),
                                          loaded[:-1].transform(data))
    if hasattr(model, "steps"):
        assert list(loaded[:-1].get_feature_names_out()) == list(
            model[:-1].get_feature_names_out())


def test_a_loaded_pipeline_trains_on_and_its_clone_refits(tmp_path):
    model, X, y, _ = fitted("classifier")
    loaded = fastmlp.load(fastmlp.save(model, tmp_path / "m.fastmlp"))
    kept = clone(model).fit(X, y)
    np.testing.assert_array_equal(clone(loaded).fit(X, y).predict_proba(X),
                                  kept.predict_proba(X))
    model[-1].set_params(warm_start=True, max_iter=5).fit(model[:-1].transform(X), y)
    loaded[-1].set_params(warm_start=True, max_iter=5).fit(loaded[:-1].transform(X), y)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("step, named", [
    (PolynomialFeatures(), "PolynomialFeatures"),
    (FunctionTransformer(np.log1p), "FunctionTransformer"),
    (SimpleImputer(add_indicator=True), "add_indicator"),
    (OneHotEncoder(min_frequency=3, sparse_output=False), "infrequent"),
])
def test_a_step_that_cannot_be_stored_is_named_and_nothing_is_written(tmp_path, step, named):
    X, y, _ = frame()
    data = X[["length", "width"]] if not isinstance(step, OneHotEncoder) else X[["island"]]
    model = make_pipeline(step, MLPClassifier((3,), max_iter=2, random_state=0))
    if isinstance(step, FunctionTransformer):
        data = data.fillna(1.0).abs()
    if isinstance(step, PolynomialFeatures):
        data = data.fillna(0.0)
    model.fit(data, y)
    path = tmp_path / "m.fastmlp"
    with pytest.raises(TypeError, match=named):
        fastmlp.save(model, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_scikit_learns_own_mlp_is_refused_by_name(tmp_path):
    from sklearn.neural_network import MLPClassifier as SkMLP

    X, y, _ = frame()
    model = make_pipeline(StandardScaler(), SkMLP((3,), max_iter=2)).fit(
        X[["width"]], y)
    with pytest.raises(TypeError, match="sklearn.neural_network.*MLPClassifier"):
        fastmlp.save(model, tmp_path / "m.fastmlp")


def _rewrite(path, edit):
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members = edit(members)
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def test_an_altered_pipeline_file_is_refused(tmp_path):
    from fastmlp._archive import metadata_digest as _metadata_digest

    model, *_ = fitted("classifier")
    path = fastmlp.save(model, tmp_path / "m.fastmlp")

    def scaled(members):  # a scaler's mean changed, the metadata digest kept
        metadata = json.loads(members["metadata.json"])
        name = metadata["root"]["steps"][0][1]["transformers"][0][1]["steps"][1][1][
            "fitted"]["mean_"]["__member__"]
        members[name] = members[name][:-1] + b"\x01"
        return members
    _rewrite(path, scaled)
    with pytest.raises(ValueError, match="checksum mismatch in arrays/"):
        fastmlp.load(path)

    path = fastmlp.save(model, tmp_path / "n.fastmlp")

    def forged(members):  # a consistent digest over metadata naming a class not stored
        metadata = json.loads(members["metadata.json"])
        metadata["root"]["steps"][1][1]["class"] = "LogisticRegression"
        metadata["metadata_sha256"] = _metadata_digest(metadata)
        members["metadata.json"] = json.dumps(metadata).encode()
        return members
    _rewrite(path, forged)
    with pytest.raises(ValueError, match="not a step this fastmlp stores"):
        fastmlp.load(path)


def test_a_pipeline_file_keeps_the_nested_models_checks(tmp_path):
    """A fastmlp step inside is a whole model file, read with every check load makes."""
    model, *_ = fitted("classifier")
    path = fastmlp.save(model, tmp_path / "m.fastmlp")
    with zipfile.ZipFile(path) as z:
        inner = [n for n in z.namelist() if n.endswith(".fastmlp")]
        est = fastmlp.estimator_file.from_bytes(z.read(inner[0]), "inner")
    np.testing.assert_array_equal(est.coefs_[0], model[-1].coefs_[0])
