"""save / load for a fitted scikit-learn composite of fastmlp estimators and scikit-learn's
standard preprocessing, without pickle.

A pipeline file is a model archive (_archive.py: a zip, metadata.json with every member's
SHA-256 and its own digest) whose metadata holds the composite as a tree: each node names
its class, its constructor parameters and its fitted state — small lists (categories,
text statistics) inline as JSON, numeric arrays as `arrays/N.npy` members, each fastmlp
step as a complete estimator file `models/N.fastmlp` read with all of `load`'s checks.

Rebuilding never sets scikit-learn's private attributes: a scaler gets its public fitted
arrays; an imputer or encoder is fitted, with the saved parameters, on a small table made
from its saved statistics or categories, which gives it exactly that state; a
ColumnTransformer or TransformedTargetRegressor is fitted around its already rebuilt
steps held by `FrozenEstimator`, so scikit-learn itself computes the wiring — then the
steps are unwrapped. The rebuilt model is checked to take the saved input width.
"""
import io
import numbers

import numpy as np

from . import _archive, estimator_file

FORMAT = "fastmlp-pipeline"
VERSION = 1
READABLE_VERSIONS = (1,)

#: The scikit-learn steps a pipeline file stores, by class name.
SCALERS = {"StandardScaler": ("mean_", "var_", "scale_", "n_samples_seen_"),
           "MinMaxScaler": ("min_", "scale_", "data_min_", "data_max_", "data_range_",
                            "n_samples_seen_"),
           "MaxAbsScaler": ("max_abs_", "scale_", "n_samples_seen_"),
           "RobustScaler": ("center_", "scale_")}
SUPPORTED = ("Pipeline", "ColumnTransformer", "TransformedTargetRegressor", "SimpleImputer",
             "OneHotEncoder", *SCALERS, "MLPClassifier", "MLPRegressor")


def _classes():
    from sklearn import preprocessing
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    from .estimators import MLPClassifier, MLPRegressor

    found = {name: getattr(preprocessing, name) for name in SCALERS}
    found.update(Pipeline=Pipeline, ColumnTransformer=ColumnTransformer,
                 TransformedTargetRegressor=TransformedTargetRegressor,
                 SimpleImputer=SimpleImputer, OneHotEncoder=preprocessing.OneHotEncoder,
                 MLPClassifier=MLPClassifier, MLPRegressor=MLPRegressor)
    return found


class _Unsupported(TypeError):
    pass


# -- JSON for parameters and small fitted values -------------------------------------------
def _value(value, where):
    """A parameter or fitted value as JSON (NaN allowed), or _Unsupported."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, type) and issubclass(value, np.generic):  # OneHotEncoder's dtype
        return {"__dtype__": np.dtype(value).name}
    if isinstance(value, np.dtype):
        return {"__dtype__": value.name}
    if isinstance(value, tuple):
        return {"__tuple__": [_value(v, where) for v in value]}
    if isinstance(value, list):
        return [_value(v, where) for v in value]
    if isinstance(value, np.ndarray) and value.ndim <= 1:
        return {"__array__": [_value(v, where) for v in value.tolist()],
                "kind": "object" if value.dtype == object else value.dtype.name}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _value(v, where) for k, v in value.items()}}
    raise _Unsupported(f"{where}: the value {value!r} ({type(value).__name__}) cannot be "
                       "stored without pickle")


#: The deepest a pipeline file's tree of steps (and a value inside it) may nest: scikit-learn
#: composites of standard steps need a handful of levels; a file nesting deeper is hostile.
MAX_DEPTH = 32
#: The longest fixed-width string dtype a file may name, in characters: a fitted step's
#: strings are its own categories and statistics, which the file's JSON holds, and these are
#: short; a longer claim would allocate that much per element on loading.
MAX_STRING_DTYPE = 4096


def safe_dtype(name):
    """The dtype a file names, if a fitted step can have it — numbers, bool, object, strings
    of at most MAX_STRING_DTYPE characters — else ValueError (a dtype of a billion
    characters is a way to exhaust memory, not a fitted value)."""
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError):
        raise ValueError(f"the dtype {name!r:.80} is not one") from None
    if dtype.kind in "biuf" and not dtype.fields and not dtype.subdtype:
        return dtype
    if dtype.kind == "O":
        return dtype
    if dtype.kind in "US" and dtype.itemsize <= MAX_STRING_DTYPE * (4 if dtype.kind == "U"
                                                                    else 1):
        return dtype
    raise ValueError(f"the dtype {name!r:.80} is not one a fitted step can have (numbers, "
                     f"bool, object, strings of at most {MAX_STRING_DTYPE} characters)")


def _python(value, depth=0):
    """The inverse of _value, every dtype checked (safe_dtype) and nesting bounded."""
    if depth > MAX_DEPTH:
        raise ValueError(f"a value nests more than {MAX_DEPTH} levels deep")
    if isinstance(value, list):
        return [_python(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if "__dtype__" in value:
            return safe_dtype(value["__dtype__"]).type
        if "__array__" in value:
            items = [_python(v, depth + 1) for v in value["__array__"]]
            return np.array(items, dtype=safe_dtype(value["kind"]))
        if "__tuple__" in value:
            return tuple(_python(v, depth + 1) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _python(v, depth + 1) for k, v in value["__dict__"].items()}
    return value


# -- saving ----------------------------------------------------------------------------------
class _Writer:
    def __init__(self):
        self.members = {}

    def array(self, value):

        name = f"arrays/{len(self.members)}.npy"
        self.members[name] = _archive.npy_bytes(np.asarray(value))
        return {"__member__": name}

    def node(self, est, where):
        from sklearn.utils.validation import check_is_fitted

        name = type(est).__name__
        if est is None or isinstance(est, str):  # "drop", "passthrough", None
            return est
        if name not in SUPPORTED or type(est) is not _classes()[name]:
            raise _Unsupported(
                f"{where} is a {type(est).__module__}.{name}, which fastmlp.save cannot "
                f"store; it stores {', '.join(SUPPORTED)}")
        node = {"class": name}
        if name in ("MLPClassifier", "MLPRegressor"):

            member = f"models/{len(self.members)}.fastmlp"
            self.members[member] = estimator_file.to_bytes(est)
            return dict(node, model=member)
        if name == "Pipeline":
            if est.memory is not None:
                raise _Unsupported(f"{where}: a Pipeline with memory= cannot be stored")
            node["steps"] = [[step, self.node(e, f"{where}/{step}")] for step, e in est.steps]
            node["params"] = {"verbose": bool(est.verbose)}
            return node
        check_is_fitted(est)
        params = est.get_params(deep=False)
        if name == "ColumnTransformer":
            return self._columns(est, params, node, where)
        if name == "TransformedTargetRegressor":
            if est.func is not None or est.inverse_func is not None:
                raise _Unsupported(f"{where}: a TransformedTargetRegressor with func/"
                                   "inverse_func (Python code) cannot be stored; use a "
                                   "transformer")
            node["params"] = {"check_inverse": bool(est.check_inverse)}
            node["regressor"] = self.node(est.regressor_, f"{where}/regressor")
            node["transformer"] = self.node(est.transformer_, f"{where}/transformer")
            node["training_dim"] = int(getattr(est, "_training_dim", 1))
            return node
        node["params"] = {k: _value(v, f"{where}: {name}({k}=...)") for k, v in params.items()}
        node["fitted"] = self._fitted(est, name, where)
        return node

    def _common(self, est):
        fitted = {"n_features_in_": int(est.n_features_in_)}
        if hasattr(est, "feature_names_in_"):
            fitted["feature_names_in_"] = [str(c) for c in est.feature_names_in_]
        return fitted

    def _fitted(self, est, name, where):
        fitted = self._common(est)
        if name in SCALERS:
            for attr in SCALERS[name]:
                value = getattr(est, attr, None)
                fitted[attr] = (self.array(value) if isinstance(value, np.ndarray)
                                else _value(value, f"{where}.{attr}"))
        elif name == "SimpleImputer":
            if est.add_indicator or callable(est.strategy):
                raise _Unsupported(f"{where}: a SimpleImputer with add_indicator=True or a "
                                   "callable strategy cannot be stored")
            statistics = est.statistics_
            fitted["statistics_"] = (_value(statistics, where) if statistics.dtype == object
                                     else self.array(statistics))
            fitted["fit_dtype"] = np.dtype(getattr(est, "_fit_dtype", statistics.dtype)).name
        elif name == "OneHotEncoder":
            if est.min_frequency is not None or est.max_categories is not None or (
                    est.feature_name_combiner != "concat"):
                raise _Unsupported(f"{where}: a OneHotEncoder with infrequent categories "
                                   "(min_frequency, max_categories) or a custom "
                                   "feature_name_combiner cannot be stored")
            fitted["categories_"] = [_value(c, where) for c in est.categories_]
        return fitted

    def _columns(self, est, params, node, where):
        given = est.transformers
        parts = []
        for (step, fitted, columns), (_, spec, _) in zip(est.transformers_, given):
            if callable(columns):
                raise _Unsupported(f"{where}/{step}: columns chosen by a callable cannot be "
                                   "stored")
            fitted = spec if isinstance(spec, str) else fitted  # "passthrough" is fitted
            parts.append([step, self.node(fitted, f"{where}/{step}"),  # as a function
                          _value(_column_list(columns), f"{where}/{step} columns")])
        remainder = est.remainder
        if not isinstance(remainder, str):
            remainder = est.transformers_[len(given)][1]
        node["transformers"] = parts
        node["remainder"] = self.node(remainder, f"{where}/remainder")
        node["params"] = {k: _value(v, f"{where}: ColumnTransformer({k}=...)")
                          for k, v in params.items() if k not in ("transformers", "remainder")}
        node["fitted"] = self._common(est)
        return node


def _column_list(columns):
    if isinstance(columns, slice):
        raise _Unsupported("columns given as a slice")
    return columns.tolist() if isinstance(columns, np.ndarray) else columns


def writer(model):
    """A function writing `model`'s pipeline file (_archive.writer); TypeError naming the
    first step that cannot be stored, before anything is written."""
    from sklearn import __version__ as sklearn_version

    from . import __version__

    w = _Writer()
    try:
        root = w.node(model, type(model).__name__)
    except _Unsupported as exc:
        raise TypeError(f"fastmlp.save: {exc}") from None
    if root is None or isinstance(root, str):
        raise TypeError(f"fastmlp.save takes a fitted model, got {model!r}")
    metadata = {"format": FORMAT, "version": VERSION, "fastmlp_version": __version__,
                "sklearn_version": sklearn_version, "root": root}
    return _archive.writer(metadata, w.members)


# -- loading ---------------------------------------------------------------------------------
class _Reader:
    def __init__(self, members, path, max_bytes):
        self.members, self.path, self.max_bytes = members, path, max_bytes
        self.classes = _classes()

    def broken(self, message):
        raise ValueError(f"{self.path} is inconsistent: {message}")

    def array(self, ref, where):
        if not (isinstance(ref, dict) and ref.get("__member__") in self.members):
            self.broken(f"{where} names no stored array")
        return np.load(io.BytesIO(self.members[ref["__member__"]]), allow_pickle=False)

    def fitted_value(self, value, where):
        if isinstance(value, dict) and "__member__" in value:
            array = self.array(value, where)
            safe_dtype(array.dtype)
            return array
        return _python(value)

    @staticmethod
    def params(node):
        """A step's parameters as saved, but for its parallelism: a file does not decide how
        many processes loading and predicting start (n_jobs stays the default, None)."""
        params = {k: _python(v) for k, v in node["params"].items()}
        params.pop("n_jobs", None)
        return params

    def node(self, node, where):
        if node is None or node in ("drop", "passthrough"):
            return node
        if where.count("/") > MAX_DEPTH:
            self.broken(f"{where}: steps nested more than {MAX_DEPTH} deep")
        if not isinstance(node, dict) or node.get("class") not in self.classes:
            self.broken(f"{where} is not a step this fastmlp stores: {node!r:.80}")
        name = node["class"]
        try:
            return getattr(self, f"_{name}", self._transformer)(node, name, where)
        except ValueError as exc:
            if str(exc).startswith(str(self.path)):
                raise
            self.broken(f"{where} ({name}) cannot be rebuilt: {exc}")
        except (TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
            self.broken(f"{where} ({name}) cannot be rebuilt: {type(exc).__name__}: {exc}")

    def _MLPClassifier(self, node, name, where):

        member = node.get("model")
        if member not in self.members:
            self.broken(f"{where} names no stored model")
        est = estimator_file.from_bytes(self.members[member], f"{self.path}:{member}",
                                   self.max_bytes)
        if type(est).__name__ != name:
            self.broken(f"{where} is a {name}, its model file holds a {type(est).__name__}")
        return est

    _MLPRegressor = _MLPClassifier

    def _Pipeline(self, node, name, where):
        steps = [(step, self.node(e, f"{where}/{step}")) for step, e in node["steps"]]
        return self.classes["Pipeline"](steps, **self.params(node))

    def _TransformedTargetRegressor(self, node, name, where):
        from sklearn.frozen import FrozenEstimator

        regressor = self.node(node["regressor"], f"{where}/regressor")
        transformer = self.node(node["transformer"], f"{where}/transformer")
        width = transformer.n_features_in_
        dim = node["training_dim"]
        if dim not in (1, 2) or dim == 1 and width != 1:
            self.broken(f"{where}: training_dim {dim} for a {width}-column target")
        y = np.zeros((2, width)) if dim == 2 else np.zeros(2)
        # the transformer is fitted on a clone (its fit takes no y, so no FrozenEstimator)
        est = self.classes[name](regressor=FrozenEstimator(regressor),
                                 transformer=transformer, check_inverse=False)
        est.fit(np.zeros((2, 1)), y)
        est.regressor_, est.transformer_ = regressor, transformer
        return est.set_params(regressor=regressor, transformer=transformer, **self.params(node))

    def _ColumnTransformer(self, node, name, where):
        import pandas as pd
        from sklearn.frozen import FrozenEstimator

        fitted = node["fitted"]
        n_in = fitted["n_features_in_"]
        names = fitted.get("feature_names_in_")
        parts = [(step, self.node(e, f"{where}/{step}"), _python(columns))
                 for step, e, columns in node["transformers"]]
        remainder = self.node(node["remainder"], f"{where}/remainder")
        frozen = lambda e: e if e is None or isinstance(e, str) else FrozenEstimator(e)  # noqa
        params = self.params(node)
        est = self.classes[name]([(s, frozen(e), c) for s, e, c in parts],
                                 remainder=frozen(remainder), **params)
        # one row every step can take: each column's first category or statistic, else 0
        row = [0.0] * n_in
        for _, e, columns in parts:
            index = _positions(columns, names, n_in)
            for i, value in zip(index, _example(e, len(index))):
                row[i] = value
        X = pd.DataFrame([row], columns=names) if names is not None else np.array(
            [row], dtype=object if any(isinstance(v, str) for v in row) else float)
        if names is not None:
            X = X.astype({c: object for c, v in zip(names, row) if not isinstance(v, float)})
        est.fit(X)
        est.transformers_ = [(s, e.estimator if isinstance(e, FrozenEstimator) else e, c)
                             for s, e, c in est.transformers_]
        return est.set_params(transformers=parts, remainder=remainder)

    def _transformer(self, node, name, where):
        import pandas as pd

        fitted = node["fitted"]
        params = self.params(node)
        n_in = fitted["n_features_in_"]
        names = fitted.get("feature_names_in_")
        if names is not None and len(names) != n_in:
            self.broken(f"{where}: {len(names)} feature names for {n_in} features")
        if name in SCALERS:
            est = self.classes[name](**params)
            for attr in SCALERS[name]:
                setattr(est, attr, self.fitted_value(fitted[attr], f"{where}.{attr}"))
            for attr in SCALERS[name]:
                value = getattr(est, attr)
                if isinstance(value, np.ndarray) and value.ndim == 1 and value.shape != (n_in,):
                    self.broken(f"{where}.{attr} has shape {value.shape}, n_features_in_ is "
                                f"{n_in}")
            est.n_features_in_ = n_in
            if names is not None:
                est.feature_names_in_ = np.array(names, dtype=object)
            return est
        if name == "SimpleImputer":  # a column of its own statistic each
            statistics = self.fitted_value(fitted["statistics_"], f"{where}.statistics_")
            dtype = safe_dtype(fitted["fit_dtype"])
            columns = [np.array([v], dtype=dtype) for v in statistics]
        else:  # OneHotEncoder: each column cycles through its categories, in their dtype
            categories = [_python(c) for c in fitted["categories_"]]
            params["categories"] = categories
            longest = max(len(c) for c in categories)
            columns = [np.array([c[i % len(c)] for i in range(longest)], dtype=c.dtype)
                       for c in categories]
        if len(columns) != n_in:
            self.broken(f"{where}: {len(columns)} columns of fitted values for {n_in} features")
        saved = node["params"].get("categories", "auto")
        est = self.classes[name](**params)
        if names is not None:
            X = pd.DataFrame({c: pd.Series(v, dtype=v.dtype) for c, v in zip(names, columns)})
        else:  # an array, as it was fitted on: one dtype for all columns
            kinds = {v.dtype for v in columns}
            X = np.stack(columns, axis=1).astype(kinds.pop() if len(kinds) == 1 else object)
        est.fit(X)
        if name == "OneHotEncoder":
            est.set_params(categories=_python(saved))
        return est


def _positions(columns, names, n_in):
    """The input positions a ColumnTransformer's column spec selects."""
    columns = columns if isinstance(columns, list) else [columns]
    if columns and all(isinstance(c, bool) for c in columns):
        return [i for i, keep in enumerate(columns) if keep]
    if all(isinstance(c, str) for c in columns):
        if names is None:
            raise ValueError("columns by name, but no feature names were stored")
        return [names.index(c) for c in columns]
    return [c % n_in for c in columns]


def _example(est, n):
    """n input values `est` accepts (a category it knows, a statistic it imputes, else 0)."""
    while hasattr(est, "steps"):
        est = next((e for _, e in est.steps if e not in (None, "passthrough")), None)
    if hasattr(est, "categories_"):
        return [c[0].item() if isinstance(c[0], np.generic) else c[0] for c in est.categories_]
    statistics = getattr(est, "statistics_", None)
    if statistics is not None and statistics.dtype == object:
        return list(statistics)
    return [0.0] * n


def rebuild(metadata, members, path, max_bytes):
    """The model a pipeline file holds (its checksums already checked, io.load)."""
    root = metadata.get("root")
    return _Reader(members, path, max_bytes).node(root, "the model")
