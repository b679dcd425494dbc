"""save / load: a portable file for fitted estimators, no pickle needed.

Format (FORMAT below, version VERSION): a zip archive, readable with `numpy.load` for its
arrays, holding

    metadata.json   format name and version, fastmlp version, estimator class and
                    parameters, fitted scalar attributes, and the SHA-256 of every array
    theta.npy       the flat parameter vector (all coefs_ and intercepts_, see architecture.py)
    classes_.npy    classifier labels (numbers or strings)
    loss_curve_.npy, validation_scores_.npy, feature_names_in_.npy   when fitted

`save` writes a temporary file beside the target and renames it over the target, so a crash
mid-save leaves the old file intact. `load` checks the format, version, checksums and shapes
and raises ValueError naming what is wrong; sizes and shapes are checked before anything is
inflated or allocated (load's docstring), so a hostile file costs neither time nor memory.
"""
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import zipfile

import numpy as np
from sklearn.preprocessing import LabelBinarizer

from .architecture import layout

FORMAT = "fastmlp-estimator"
VERSION = 1

_SCALARS = ("n_iter_", "t_", "n_outputs_", "n_layers_", "out_activation_", "n_features_in_",
            "loss_", "best_loss_", "best_validation_score_", "backend_")
_ARRAYS = ("loss_curve_", "validation_scores_", "feature_names_in_")


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


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


def save(estimator, path):
    """Write a fitted MLPClassifier/MLPRegressor to `path` (atomically)."""
    from sklearn.utils.validation import check_is_fitted

    from . import __version__
    from .estimators import MLPClassifier, MLPRegressor

    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError(f"save() takes a fastmlp MLPClassifier or MLPRegressor, "
                        f"got {type(estimator).__name__}")
    check_is_fitted(estimator)
    net = estimator._net
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
    members = {f"{name}.npy": _npy_bytes(value) for name, value in arrays.items()}
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
        "label_type": getattr(getattr(estimator, "_label_binarizer", None), "y_type_", None),
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
    }
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastmlp-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("metadata.json", json.dumps(metadata, indent=1,
                                                             allow_nan=True))
                for name, data in members.items():
                    archive.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _open_regular(path):
    """path opened for reading if it is a regular file (a FIFO, a device or a directory
    would block the read or never end it): opened without blocking, then checked, so what
    is checked is what is read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file, so not a fastmlp model file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


#: What load() inflates at most, in bytes, unless told otherwise (load's max_bytes): the
#: members' declared sizes together. The metadata is at most METADATA_BYTES.
MAX_BYTES = 1 << 32
METADATA_BYTES = 1 << 24
_NPY_HEADER_BYTES = 1 << 16  # .npy headers are at most this long


def _check_declared(info, path, limit):
    if info.file_size > limit:
        raise ValueError(f"{path}: member {info.filename} declares {info.file_size} bytes "
                         f"uncompressed, over the limit of {limit} (load's max_bytes)")


def _inflate(stream, n, info, path):
    """Exactly n more bytes of a member (a zip bomb declares little and inflates much: one
    byte past n is an error, never more held)."""
    data = stream.read(n + 1)
    if len(data) != n:
        raise ValueError(f"{path}: member {info.filename} does not inflate to the size it "
                         "declares: the file is damaged or hostile")
    return data


def _npy_member(archive, info, path, limit, expected_length):
    """An .npy member's bytes: its header read first and its shape checked — against the
    member's declared size and against expected_length(name) (None: any length) — before
    its data is inflated."""
    _check_declared(info, path, limit)
    with archive.open(info) as stream:
        head = stream.read(10)
        if len(head) < 10 or not head.startswith(b"\x93NUMPY"):
            raise ValueError(f"{path}: {info.filename} is not an .npy array")
        major = head[6]
        if major not in (1, 2):
            raise ValueError(f"{path}: {info.filename} has .npy version {major}, not 1 or 2")
        if major == 2:
            head += stream.read(2)
        width = 2 if major == 1 else 4
        header_length = int.from_bytes(head[8:8 + width], "little")
        if len(head) + header_length > min(info.file_size, _NPY_HEADER_BYTES):
            raise ValueError(f"{path}: {info.filename} has a header longer than the member")
        head += stream.read(header_length)
        if len(head) != (10 if major == 1 else 12) + header_length:
            raise ValueError(f"{path}: {info.filename} ends inside its header")
        header = io.BytesIO(head)
        np.lib.format.read_magic(header)
        read = (np.lib.format.read_array_header_1_0 if major == 1
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(header)
        if dtype.hasobject:
            raise ValueError(f"{path}: {info.filename} holds Python objects")
        n_bytes = dtype.itemsize * math.prod(shape)
        if len(head) + n_bytes != info.file_size:
            raise ValueError(f"{path}: {info.filename} claims shape {shape} of {dtype} "
                             f"({n_bytes} bytes), but the member declares "
                             f"{info.file_size - len(head)}")
        wanted = expected_length(info.filename[:-4])
        if wanted is not None and (len(shape) != 1 or shape[0] != wanted):
            raise ValueError(f"{path} is inconsistent: {info.filename} has shape {shape}, its "
                             f"metadata implies ({wanted},)")
        return head + _inflate(stream, n_bytes, info, path)


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


def _read(path, limit=MAX_BYTES):
    try:
        with _open_regular(path) as file, zipfile.ZipFile(file) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            if "metadata.json" not in infos:
                raise ValueError(f"{path} is not a fastmlp model file (no metadata.json)")
            for info in infos.values():
                _check_declared(info, path, limit)
            declared = sum(info.file_size for info in infos.values())
            if declared > limit:
                raise ValueError(f"{path}: its members declare {declared} bytes uncompressed, "
                                 f"over the limit of {limit} (load's max_bytes)")
            info = infos["metadata.json"]
            _check_declared(info, path, min(limit, METADATA_BYTES))
            with archive.open(info) as stream:
                metadata = json.loads(_inflate(stream, info.file_size, info, path))
            n_params = _claimed_parameters(metadata, path, limit)
            expected = {"theta": n_params}.get
            members = {name: _npy_member(archive, info, path, limit, expected)
                       for name, info in infos.items() if name.endswith(".npy")}
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path} is not a fastmlp model file, or it is truncated: {exc}")
    except (zipfile.LargeZipFile, KeyError, OSError, EOFError) as exc:
        raise ValueError(f"{path} could not be read as a fastmlp model file: {exc}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} has unreadable metadata: {exc}")
    except ValueError:  # ours, already saying what is wrong
        raise
    except Exception as exc:  # zlib.error and friends from a damaged member
        raise ValueError(f"{path} is damaged: {type(exc).__name__}: {exc}")
    return metadata, members


def load(path, max_bytes=MAX_BYTES):
    """Read an estimator written by save(); raises ValueError if the file is not intact.

    Before anything is inflated or allocated, every member's declared size, the parameter
    count the metadata's layer sizes imply and each array header's shape are checked against
    the file's own consistency rules and against max_bytes (default MAX_BYTES, 4 GiB: raise
    it for a larger model); a member that inflates past its declared size is refused as it
    inflates."""
    from .estimators import MLPClassifier, MLPRegressor
    from .model import MLP

    path = os.fspath(path)
    metadata, members = _read(path, max_bytes)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastmlp model file (format "
                         f"{metadata.get('format') if isinstance(metadata, dict) else None!r})")
    if metadata.get("version") != VERSION:
        raise ValueError(f"{path} has format version {metadata.get('version')!r}; this "
                         f"fastmlp reads version {VERSION}")
    checksums = metadata.get("sha256", {})
    if set(checksums) != set(members):
        raise ValueError(f"{path} is altered: its arrays {sorted(members)} do not match the "
                         f"recorded ones {sorted(checksums)}")
    for name, data in members.items():
        if hashlib.sha256(data).hexdigest() != checksums[name]:
            raise ValueError(f"{path} is altered or damaged: checksum mismatch in {name}")
    arrays = {name[:-4]: np.load(io.BytesIO(data), allow_pickle=False)
              for name, data in members.items()}

    classes = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}
    if metadata.get("estimator") not in classes:
        raise ValueError(f"{path} holds an unknown estimator {metadata.get('estimator')!r}")
    params = dict(metadata["params"])
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = {k: v for k, v in params["class_weight"]["__pairs__"]}
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    est = classes[metadata["estimator"]](**params)
    for name, value in metadata["attributes"].items():
        setattr(est, name, value)
    for name in _ARRAYS:
        if name in arrays:
            value = arrays[name]
            setattr(est, name, value.tolist() if name != "feature_names_in_" else value)

    sizes = metadata["layer_sizes"]
    loss = "squared_error" if metadata["estimator"] == "MLPRegressor" else (
        "cross_entropy" if est.out_activation_ == "softmax" else "binary_cross_entropy")
    net = MLP(sizes, est.activation, est.out_activation_, loss, leaky_slope=est.leaky_slope,
              dtype=metadata["dtype"], backend=est.backend, n_threads=est.n_threads)
    theta = arrays["theta"]
    if theta.shape != net.theta.shape or theta.dtype != net.theta.dtype:
        raise ValueError(f"{path} is inconsistent: theta has shape {theta.shape} and dtype "
                         f"{theta.dtype}, layers {sizes} need {net.theta.shape} {net.dtype}")
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"{path} holds non-finite weights")
    net.theta[...] = theta
    est._net = net
    est._best_theta = net.theta.copy()
    if "classes_" in arrays:
        est.classes_ = arrays["classes_"]
        binarizer = LabelBinarizer()
        if metadata.get("label_type") == "multilabel-indicator":
            binarizer.fit(np.eye(len(est.classes_), dtype=int))
        else:
            binarizer.fit(est.classes_)
        est._label_binarizer = binarizer
    est._sync_attributes()
    return est
