"""save / load: a portable file for fitted estimators, no pickle needed.

Format (FORMAT below, version VERSION): a zip archive, readable with `numpy.load` for its
arrays, holding

    metadata.json   format name and version, fastmlp version, estimator class and
                    parameters, fitted scalar attributes, the SHA-256 of every array and
                    of the metadata itself (its canonical JSON without that digest)
    theta.npy       the flat parameter vector (all coefs_ and intercepts_, see architecture.py)
    classes_.npy    classifier labels (numbers or strings)
    loss_curve_.npy, validation_scores_.npy, feature_names_in_.npy   when fitted

`save` writes a temporary file beside the target and renames it over the target, so a crash
or Ctrl-C mid-save leaves the old file intact (save's docstring: symlinks, permissions).
`load` checks the format, version, checksums, shapes and every rule that ties the fields
together, and raises ValueError naming what is wrong; sizes and shapes are checked before
anything is inflated or allocated (load's docstring), so a hostile file costs neither time
nor memory. Version 1 files (no metadata digest) are still read, with every other check.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import secrets
import stat
import zipfile

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.preprocessing import LabelBinarizer

from .architecture import layout

FORMAT = "fastmlp-estimator"
VERSION = 2
READABLE_VERSIONS = (1, 2)

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


def _metadata_digest(metadata):
    """SHA-256 of the metadata's canonical JSON, without the digest itself: any edit that
    changes a value (not only whitespace or key order) changes it."""
    fields = {k: v for k, v in metadata.items() if k != "metadata_sha256"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _params(estimator):
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if key == "random_state" and not (value is None or isinstance(value, (int, np.integer))):
            value = None  # a RandomState object is not portable; it only seeded the fit
        if key == "class_weight" and isinstance(value, dict):
            value = {"__pairs__": [[_jsonable(k), float(v)] for k, v in value.items()]}
        params[key] = _jsonable(value)
    return params


def save(model: BaseEstimator, path: str | os.PathLike[str]) -> str:
    """Write a fitted model to `path`, atomically.

    No pickle: the file holds every step's parameters and fitted arrays, with checksums.

    Parameters
    ----------
    model : MLPClassifier, MLPRegressor, Pipeline, ColumnTransformer or \
TransformedTargetRegressor
        A fitted fastmlp estimator, or a scikit-learn composite of them and scikit-learn's
        standard preprocessing (`fastmlp.pipeline_io.SUPPORTED`).
    path : str or path-like
        Where to write.

    Returns
    -------
    path : str
        The path written.

    Raises
    ------
    TypeError
        Naming the first step that cannot be stored, before anything is written.

    Notes
    -----

    The file is written beside its target and renamed over it only when complete, so an
    error, a crash or Ctrl-C mid-save leaves whatever was at `path` as it was. A symlink at
    `path` is written through: the file it points to is replaced, the link stays. Anything
    else at `path` (or where its symlink points) that is not a regular file — a directory,
    a device, a FIFO — is refused with ValueError. A new file gets the permissions the umask
    allows, as `open` would give it; a replaced file keeps its permission bits.
    """
    from . import pipeline_io
    from .estimators import MLPClassifier, MLPRegressor

    if isinstance(model, (MLPClassifier, MLPRegressor)):
        write = _estimator_writer(model)
    else:
        write = pipeline_io.writer(model)  # checks every step before anything is written
    path = os.fspath(path)
    target = _save_target(path)
    with _atomic_file(target) as f:
        write(f)
    return path


def estimator_bytes(estimator):
    """The model file of a fitted fastmlp estimator, as bytes (a pipeline file holds one per
    fastmlp step)."""
    buffer = io.BytesIO()
    _estimator_writer(estimator)(buffer)
    return buffer.getvalue()


def _estimator_writer(estimator):
    """A function that writes the fitted estimator's archive to a binary file."""
    from sklearn.utils.validation import check_is_fitted

    from . import __version__

    check_is_fitted(estimator)
    estimator._adopt_parameters()  # coefs_/intercepts_ as assigned are the model
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
    }
    return archive_writer(metadata, members)


def archive_writer(metadata, members):
    """A function writing a model archive: the members, and metadata.json with their
    SHA-256 checksums and its own digest added."""
    metadata = dict(metadata, sha256={name: hashlib.sha256(data).hexdigest()
                                      for name, data in members.items()})
    metadata["metadata_sha256"] = _metadata_digest(metadata)

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("metadata.json", json.dumps(metadata, indent=1, allow_nan=True))
            for name, data in members.items():
                archive.writestr(name, data)
    return write


def _save_target(path):
    """Where save writes for `path`: through a symlink to the file it points to; refused
    when that is something other than a regular file (or nothing)."""
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} exists and is not a regular file; save replaces only a "
                         "regular file (or writes through a symlink to one)")
    return target


@contextlib.contextmanager
def _atomic_file(target):
    """A binary file beside `target` that replaces it when the block ends without an
    error (and is removed when it does not). Created with mode 0o666 so the umask applies
    as for any new file; an existing target's permission bits are kept."""
    directory = os.path.dirname(os.path.abspath(target))
    try:
        kept = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        kept = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if kept is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), kept)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    _sync_directory(directory)


def _sync_directory(directory):
    """The rename made durable (POSIX: fsync the directory; elsewhere nothing to do)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def _read(path, limit=MAX_BYTES, file=None):
    """metadata and members (name: bytes) of the archive at `path` (or in `file`, with
    `path` naming it in messages), every size checked before it is inflated."""
    from .pipeline_io import FORMAT as PIPELINE

    try:
        with (file if file is not None else _open_regular(path)) as file, \
                zipfile.ZipFile(file) as archive:
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
            if isinstance(metadata, dict) and metadata.get("format") == PIPELINE:
                expected = {}.get  # each step's arrays are checked as it is rebuilt
            else:
                expected = {"theta": _claimed_parameters(metadata, path, limit)}.get
            members = {}
            for name, info in infos.items():
                if name.endswith(".npy"):
                    members[name] = _npy_member(archive, info, path, limit, expected)
                elif name.endswith(".fastmlp"):  # a pipeline's fastmlp step
                    with archive.open(info) as stream:
                        members[name] = _inflate(stream, info.file_size, info, path)
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


def load(path: str | os.PathLike[str], max_bytes: int = MAX_BYTES) -> BaseEstimator:
    """Read a model written by `save`.

    Parameters
    ----------
    path : str or path-like
        The model file.
    max_bytes : int, default=MAX_BYTES
        The most bytes the file may inflate to (4 GiB: raise it for a larger model).

    Returns
    -------
    model : MLPClassifier, MLPRegressor or scikit-learn composite
        The model as it was saved: it predicts what it predicted then.

    Raises
    ------
    ValueError
        When the file is not intact, naming what is wrong.

    Notes
    -----

    Before anything is inflated or allocated, every member's declared size, the parameter
    count the metadata's layer sizes imply and each array header's shape are checked against
    the file's own consistency rules and against max_bytes (default MAX_BYTES, 4 GiB: raise
    it for a larger model); a member that inflates past its declared size is refused as it
    inflates. Then the checksums (the arrays' and the metadata's) and every rule that ties
    the fields together (_check_fields): a file that loads predicts what it predicted when
    it was saved. A pipeline's steps are rebuilt and checked likewise (pipeline_io)."""
    from . import pipeline_io

    path = os.fspath(path)
    metadata, members = _read(path, max_bytes)
    if isinstance(metadata, dict) and metadata.get("format") == pipeline_io.FORMAT:
        _check_archive(metadata, members, path, pipeline_io.READABLE_VERSIONS)
        return pipeline_io.rebuild(metadata, members, path, max_bytes)
    return _estimator_from(metadata, members, path)


def estimator_from_bytes(data, path, max_bytes=MAX_BYTES):
    """A fastmlp estimator from its model file's bytes (`path` names it in messages)."""
    metadata, members = _read(path, max_bytes, file=io.BytesIO(data))
    return _estimator_from(metadata, members, path)


def _check_archive(metadata, members, path, versions, digest_since=1):
    """The version, the metadata's digest (from format version `digest_since` on) and every
    member's checksum."""
    if metadata.get("version") not in versions:
        raise ValueError(f"{path} has format version {metadata.get('version')!r}; this "
                         f"fastmlp reads versions {list(versions)}")
    if metadata["version"] >= digest_since and metadata.get(
            "metadata_sha256") != _metadata_digest(metadata):
        raise ValueError(f"{path} is altered or damaged: checksum mismatch in metadata.json")
    checksums = metadata.get("sha256", {})
    if not isinstance(checksums, dict) or set(checksums) != set(members):
        raise ValueError(f"{path} is altered: its members {sorted(members)} do not match the "
                         f"recorded ones {sorted(checksums)}")
    for name, data in members.items():
        if hashlib.sha256(data).hexdigest() != checksums[name]:
            raise ValueError(f"{path} is altered or damaged: checksum mismatch in {name}")


def _estimator_from(metadata, members, path):
    from .estimators import MLPClassifier, MLPRegressor
    from .model import MLP

    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastmlp model file (format "
                         f"{metadata.get('format') if isinstance(metadata, dict) else None!r})")
    _check_archive(metadata, members, path, READABLE_VERSIONS, digest_since=2)
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
    est = Estimator(**params)
    try:
        est._check_params()
        est._hidden_sizes()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} is inconsistent: {exc}") from None
    attributes = _fields(metadata, "attributes", path)
    _check_fields(metadata, attributes, arrays, est, path)
    for name, value in attributes.items():
        setattr(est, name, value)
    for name in _ARRAYS:
        if name in arrays:
            value = arrays[name]
            setattr(est, name, value.tolist() if name != "feature_names_in_" else value)

    sizes = metadata["layer_sizes"]
    net = MLP(sizes, est.activation, est.out_activation_, est._network_loss(est.out_activation_),
              leaky_slope=est.leaky_slope,
              dtype=metadata["dtype"], backend=est.backend, n_threads=est.n_threads)
    theta = arrays["theta"]
    if theta.shape != net.theta.shape or theta.dtype != net.theta.dtype:
        raise ValueError(f"{path} is inconsistent: theta has shape {theta.shape} and dtype "
                         f"{theta.dtype}, layers {sizes} need {net.theta.shape} {net.dtype}")
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"{path} holds non-finite weights")
    net.theta[...] = theta
    est._net = net
    est._best_theta = net.theta.copy() if est.early_stopping else None
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


def _fields(metadata, key, path):
    value = metadata.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{path} is inconsistent: {key} is {type(value).__name__}, not a "
                         "mapping")
    return dict(value)


#: The scalar attributes a file must hold, and their types.
_REQUIRED = {"n_iter_": int, "n_outputs_": int, "n_layers_": int, "out_activation_": str,
             "n_features_in_": int}


def _check_fields(metadata, attributes, arrays, est, path):
    """Every rule that ties the metadata's fields and the arrays together (the checksums
    catch an accident; these catch a file whose parts disagree however it was made):
    ValueError naming the first broken one."""
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
    expected = [attributes["n_features_in_"], *est._hidden_sizes(), attributes["n_outputs_"]]
    if sizes != expected:
        broken(f"layer_sizes {sizes}, but n_features_in_, hidden_layer_sizes and n_outputs_ "
               f"make {expected}")
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
        if activation != est._output_activation(None):
            broken(f"out_activation_ is {activation!r}, but loss={est.loss!r} needs "
                   f"{est._output_activation(None)!r}")
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
