"""The model file of a fitted MLPClassifier or MLPRegressor (format FORMAT, version VERSION),
in _archive's container:

    metadata.json   format name and version, fastmlp version, estimator class and
                    parameters, fitted scalar attributes, the SHA-256 of every array and
                    of the metadata itself (its canonical JSON without that digest)
    theta.npy       the flat parameter vector (all coefs_ and intercepts_, see architecture.py)
    classes_.npy    classifier labels (numbers or strings)
    loss_curve_.npy, validation_scores_.npy, feature_names_in_.npy   when fitted

Reading checks the format, version, checksums, shapes and every rule that ties the fields
together, and raises ValueError naming what is wrong. Version 1 files (no metadata digest)
are still read, with every other check.
"""
import io

import numpy as np
from . import _archive
from .architecture import layout

FORMAT = "fastmlp-estimator"
VERSION = 2
READABLE_VERSIONS = (1, 2)

_SCALARS = ("n_iter_", "t_", "n_outputs_", "n_layers_", "out_activation_", "n_features_in_",
            "loss_", "best_loss_", "best_validation_score_", "backend_")
_ARRAYS = ("loss_curve_", "validation_scores_", "feature_names_in_")


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _params(estimator):
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if key == "random_state" and not (value is None or isinstance(value, (int, np.integer))):
            value = None  # a RandomState object is not portable; it only seeded the fit
        if key == "class_weight" and isinstance(value, dict):
            value = {"__pairs__": [[_jsonable(k), float(v)] for k, v in value.items()]}
        params[key] = _jsonable(value)
    return params


def to_bytes(estimator):
    """The model file of a fitted fastmlp estimator, as bytes (a pipeline file holds one per
    fastmlp step)."""
    buffer = io.BytesIO()
    writer(estimator)(buffer)
    return buffer.getvalue()


def writer(estimator):
    """A function that writes the fitted estimator's archive to a binary file."""
    from sklearn.utils.validation import check_is_fitted

    from . import __version__

    from .estimators import file_state

    check_is_fitted(estimator)
    net, label_type = file_state(estimator)  # coefs_/intercepts_ as assigned are the model
    arrays = {"theta": net.theta}
    if hasattr(estimator, "classes_"):
        classes = np.asarray(estimator.classes_)
        if classes.dtype == object:
            classes = classes.astype(str)
        arrays["classes_"] = classes
    for name in _ARRAYS:
        value = getattr(estimator, name, None)
        if value is not None:
            arrays[name] = np.asarray(value)
    members = {f"{name}.npy": _archive.npy_bytes(value) for name, value in arrays.items()}
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "fastmlp_version": __version__,
        "estimator": type(estimator).__name__,
        "params": _params(estimator),
        "layer_sizes": list(net.arch.layer_sizes),
        "dtype": net.dtype.name,
        "attributes": {name: _jsonable(getattr(estimator, name)) for name in _SCALARS
                       if hasattr(estimator, name)},
        "label_type": label_type,
    }
    return _archive.writer(metadata, members)


def _claimed_parameters(metadata, path, limit):
    """θ's length as the metadata's layer sizes imply it, refused when its bytes would pass
    `limit` (counted in Python integers: nothing is allocated for a claim)."""
    sizes = metadata.get("layer_sizes") if isinstance(metadata, dict) else None
    if (not isinstance(sizes, list) or not 2 <= len(sizes) <= 1024
            or not all(type(n) is int and n >= 1 for n in sizes)):
        raise ValueError(f"{path} has invalid layer_sizes {sizes!r}")
    n_params = layout(sizes)[1]
    if 8 * n_params > limit:
        raise ValueError(f"{path} claims layers {sizes}: {n_params} parameters, over the "
                         f"limit of {limit} bytes (load's max_bytes)")
    return n_params


def lengths(path):
    """_archive.read's `lengths` for an estimator file at `path`: θ's length as its layer
    sizes imply it (refused past the limit before anything is read)."""
    def implied(metadata, limit):
        if isinstance(metadata, dict) and metadata.get("format") == FORMAT:
            return {"theta": _claimed_parameters(metadata, path, limit)}
        return {}
    return implied


def from_bytes(data, path, max_bytes=_archive.MAX_BYTES):
    """A fastmlp estimator from its model file's bytes (`path` names it in messages)."""
    metadata, members = _archive.read(path, max_bytes, io.BytesIO(data), lengths(path))
    return from_archive(metadata, members, path)


def from_archive(metadata, members, path):
    """The estimator an estimator file's metadata and members hold, every rule checked."""
    from .estimators import MLPClassifier, MLPRegressor, from_file_state

    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastmlp model file (format "
                         f"{metadata.get('format') if isinstance(metadata, dict) else None!r})")
    _archive.check(metadata, members, path, READABLE_VERSIONS, digest_since=2)
    arrays = {name[:-4]: np.load(io.BytesIO(data), allow_pickle=False)
              for name, data in members.items()}

    classes = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}
    if metadata.get("estimator") not in classes:
        raise ValueError(f"{path} holds an unknown estimator {metadata.get('estimator')!r}")
    Estimator = classes[metadata["estimator"]]
    params = _fields(metadata, "params", path)
    unknown = set(params) - set(Estimator().get_params())
    if unknown:
        raise ValueError(f"{path} is inconsistent: {Estimator.__name__} has no parameters "
                         f"{sorted(unknown)}")
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = {k: v for k, v in params["class_weight"]["__pairs__"]}
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    attributes = _fields(metadata, "attributes", path)
    _check_fields(metadata, attributes, arrays, path)
    for name in _ARRAYS:
        if name in arrays:
            value = arrays[name]
            attributes[name] = value.tolist() if name != "feature_names_in_" else value
    if "classes_" in arrays:
        attributes["classes_"] = arrays["classes_"]
    sizes, theta = metadata["layer_sizes"], arrays["theta"]
    n_params = layout(sizes)[1]
    if theta.shape != (n_params,) or theta.dtype != np.dtype(metadata["dtype"]):
        raise ValueError(f"{path} is inconsistent: theta has shape {theta.shape} and dtype "
                         f"{theta.dtype}, layers {sizes} need {(n_params,)} {metadata['dtype']}")
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"{path} holds non-finite weights")
    try:
        return from_file_state(Estimator, params, attributes, sizes, theta,
                               metadata.get("label_type"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} is inconsistent: {exc}") from None


def _fields(metadata, key, path):
    value = metadata.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{path} is inconsistent: {key} is {type(value).__name__}, not a "
                         "mapping")
    return dict(value)


#: The scalar attributes a file must hold, and their types.
_REQUIRED = {"n_iter_": int, "n_outputs_": int, "n_layers_": int, "out_activation_": str,
             "n_features_in_": int}


def _check_fields(metadata, attributes, arrays, path):
    """Every rule that ties the metadata's fields and the arrays together (the checksums
    catch an accident; these catch a file whose parts disagree however it was made):
    ValueError naming the first broken one. The rules that need the estimator's parameters
    (its hidden layers, a regressor's output activation) are estimators.from_file_state's."""
    def broken(message):
        raise ValueError(f"{path} is inconsistent: {message}")

    unknown = set(attributes) - set(_SCALARS)
    if unknown:
        broken(f"unknown attributes {sorted(unknown)}")
    for name, kind in _REQUIRED.items():
        if not isinstance(attributes.get(name), kind) or isinstance(attributes.get(name), bool):
            broken(f"{name} is {attributes.get(name)!r}, expected a {kind.__name__}")
    if metadata.get("dtype") not in ("float32", "float64"):
        broken(f"dtype {metadata.get('dtype')!r} is not float32 or float64")
    sizes = metadata["layer_sizes"]  # ints >= 1, checked as the file was read
    if attributes["n_layers_"] != len(sizes):
        broken(f"n_layers_ is {attributes['n_layers_']}, layer_sizes has {len(sizes)}")
    if attributes["n_iter_"] < 0:
        broken(f"n_iter_ is {attributes['n_iter_']}")
    names = arrays.get("feature_names_in_")
    if names is not None and names.shape != (sizes[0],):
        broken(f"feature_names_in_ has shape {names.shape}, n_features_in_ is {sizes[0]}")
    for name in ("loss_curve_", "validation_scores_"):
        if name in arrays and (arrays[name].ndim != 1 or arrays[name].dtype.kind != "f"):
            broken(f"{name} is not a 1-D array of floats")
    n_outputs, activation = sizes[-1], attributes["out_activation_"]
    if metadata["estimator"] == "MLPRegressor":
        if "classes_" in arrays:
            broken("a regressor with classes_")
        return
    classes, label_type = arrays.get("classes_"), metadata.get("label_type")
    if classes is None or classes.ndim != 1 or len(classes) < 1:
        broken("a classifier needs a 1-D, non-empty classes_")
    if len(np.unique(classes)) != len(classes):
        broken("classes_ holds a label twice")
    rules = {"binary": (1, "logistic"), "multiclass": (len(classes), "softmax"),
             "multilabel-indicator": (len(classes), "logistic")}
    if label_type not in rules:
        broken(f"label_type {label_type!r} is not one of {sorted(rules)}")
    width, wanted = rules[label_type]
    if label_type == "binary" and len(classes) > 2 or label_type == "multiclass" and len(
            classes) < 3:
        broken(f"{len(classes)} classes, but label_type {label_type!r}")
    if n_outputs != width or activation != wanted:
        broken(f"{len(classes)} {label_type} classes need {width} {wanted} outputs; the "
               f"output layer has {n_outputs} {activation}")
