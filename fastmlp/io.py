"""save / load: a portable file for a fitted estimator or a pipeline of them, no pickle needed.

An estimator's file is estimator_file.py's format, a pipeline's pipeline_io.py's, both in
_archive.py's container (a zip of .npy arrays and checksummed JSON metadata). `save` writes
a temporary file beside the target and renames it over the target, so a crash or Ctrl-C
mid-save leaves the old file intact (save's docstring: symlinks, permissions). `load` checks
the format, version, checksums, shapes and every rule that ties the fields together, and
raises ValueError naming what is wrong; sizes and shapes are checked before anything is
inflated or allocated (load's docstring), so a hostile file costs neither time nor memory.
"""
from __future__ import annotations

import os

from sklearn.base import BaseEstimator

from . import _archive, estimator_file, pipeline_io

#: What load() inflates at most, in bytes, unless told otherwise (load's max_bytes).
MAX_BYTES = _archive.MAX_BYTES


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
    error, a crash, Ctrl-C or SIGTERM mid-save leaves whatever was at `path` as it was.
    SIGTERM (with its default action) removes the temporary before the process ends as the
    signal asks; a temporary that a save killed outright (SIGKILL) left behind is removed by
    the next save of the same path, once it is a minute old and no save holds its lock.

    A symlink at `path` is written through: the file it points to is replaced, the link
    stays. Anything else at `path` (or where its symlink points) that is not a regular file
    — a directory, a device, a FIFO — is refused with ValueError. A new file gets the
    permissions the umask allows, as `open` would give it; a replaced file keeps its
    permission bits.
    """
    from .estimators import MLPClassifier, MLPRegressor

    if isinstance(model, (MLPClassifier, MLPRegressor)):
        write = estimator_file.writer(model)
    else:
        write = pipeline_io.writer(model)  # checks every step before anything is written
    path = os.fspath(path)
    target = _archive.save_target(path)
    with _archive.atomic_file(target) as f:
        write(f)
    return path


def load(path: str | os.PathLike[str], max_bytes: int = _archive.MAX_BYTES) -> BaseEstimator:
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
    path = os.fspath(path)
    metadata, members = _archive.read(path, max_bytes, lengths=estimator_file.lengths(path))
    if isinstance(metadata, dict) and metadata.get("format") == pipeline_io.FORMAT:
        _archive.check(metadata, members, path, pipeline_io.READABLE_VERSIONS)
        return pipeline_io.rebuild(metadata, members, path, max_bytes)
    return estimator_file.from_archive(metadata, members, path)
