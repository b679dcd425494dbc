"""The container of fastmlp's model files: a zip of .npy arrays and metadata.json holding a
SHA-256 of every member and of the metadata itself, written atomically, read with every size
checked before anything is inflated or allocated (a hostile file costs neither time nor
memory). estimator_file.py and pipeline_io.py define what goes in it; io.py's save and load
choose between them.
"""
import contextlib
import hashlib
import io
import json
import math
import os
import re
import secrets
import signal
import stat
import threading
import time
import zipfile

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a temporary is judged by its age alone
    fcntl = None

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


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def metadata_digest(metadata):
    """SHA-256 of the metadata's canonical JSON, without the digest itself: any edit that
    changes a value (not only whitespace or key order) changes it."""
    fields = {k: v for k, v in metadata.items() if k != "metadata_sha256"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def writer(metadata, members):
    """A function writing a model archive: the members, and metadata.json with their
    SHA-256 checksums and its own digest added."""
    metadata = dict(metadata, sha256={name: hashlib.sha256(data).hexdigest()
                                      for name, data in members.items()})
    metadata["metadata_sha256"] = metadata_digest(metadata)

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("metadata.json", json.dumps(metadata, indent=1, allow_nan=True))
            for name, data in members.items():
                archive.writestr(name, data)
    return write


def check(metadata, members, path, versions, digest_since=1):
    """The version, the metadata's digest (from format version `digest_since` on) and every
    member's checksum."""
    if metadata.get("version") not in versions:
        raise ValueError(f"{path} has format version {metadata.get('version')!r}; this "
                         f"fastmlp reads versions {list(versions)}")
    if metadata["version"] >= digest_since and metadata.get(
            "metadata_sha256") != metadata_digest(metadata):
        raise ValueError(f"{path} is altered or damaged: checksum mismatch in metadata.json")
    checksums = metadata.get("sha256", {})
    if not isinstance(checksums, dict) or set(checksums) != set(members):
        raise ValueError(f"{path} is altered: its members {sorted(members)} do not match the "
                         f"recorded ones {sorted(checksums)}")
    for name, data in members.items():
        if hashlib.sha256(data).hexdigest() != checksums[name]:
            raise ValueError(f"{path} is altered or damaged: checksum mismatch in {name}")


def save_target(path):
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


#: A temporary of save's this much older than now, and locked by no one, was left by a save
#: that was killed (SIGKILL, a power cut): the next save beside it removes it.
STALE_SECONDS = 60


def _temporary_name(target, token):
    return os.path.join(os.path.dirname(os.path.abspath(target)),
                        f".{os.path.basename(target)}.{token}.tmp")


@contextlib.contextmanager
def atomic_file(target):
    """A binary file beside `target` that replaces it when the block ends without an
    error (and is removed when it does not, SIGTERM included). Created with mode 0o666 so the
    umask applies as for any new file; an existing target's permission bits are kept. The
    temporary is locked while it is written; stale ones of the same target are removed."""
    directory = os.path.dirname(os.path.abspath(target))
    try:
        kept = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        kept = None
    _remove_stale_temporaries(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    with _terminate_cleanly():
        while True:
            tmp = _temporary_name(target, secrets.token_hex(6))
            try:
                fd = os.open(tmp, flags, 0o666)
                break
            except FileExistsError:
                continue
        try:
            with os.fdopen(fd, "wb") as f:
                if fcntl is not None:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # in use: not stale
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


def _remove_stale_temporaries(target):
    """Remove the temporaries of `target` that killed saves left: older than STALE_SECONDS
    and locked by no one (where locks exist; elsewhere, age alone)."""
    pattern = re.compile(re.escape(f".{os.path.basename(target)}.") + "[0-9a-f]{12}"
                         + re.escape(".tmp") + r"\Z")
    directory = os.path.dirname(os.path.abspath(target))
    try:
        names = [name for name in os.listdir(directory) if pattern.match(name)]
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            if time.time() - os.lstat(path).st_mtime < STALE_SECONDS:
                continue
            with open(path, "rb") as f:
                if fcntl is not None:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if in use
                os.unlink(path)
        except OSError:  # in use, gone already, or not ours to remove
            continue


class _Terminated(BaseException):
    """SIGTERM arrived during a save: the temporary is removed, then the process ends."""


@contextlib.contextmanager
def _terminate_cleanly():
    """SIGTERM during the block raises _Terminated, so the block removes its temporary; the
    signal is then delivered again with its default action, and the process ends as SIGTERM
    asks. Only in the main thread, and only where SIGTERM has its default action (a handler
    of the application's own is left to decide)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    received = []

    def terminated(signum, frame):
        received.append(signum)
        raise _Terminated

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if received:
            os.kill(os.getpid(), signal.SIGTERM)  # the default action: the process ends here


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


def open_regular(path):
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


def read(path, limit=MAX_BYTES, file=None, lengths=None):
    """metadata and members (name: bytes) of the archive at `path` (or in `file`, with
    `path` naming it in messages), every size checked before it is inflated.
    lengths(metadata, limit) -> {array name: the length its metadata implies}, checked
    against each .npy header before its data is inflated (None: none implied)."""
    try:
        with (file if file is not None else open_regular(path)) as file, \
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
            expected = (lengths(metadata, limit) if lengths else {}).get
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
