"""Hostile arguments: a tampered Architecture never reaches a kernel.

An Architecture cannot be changed after construction (its attributes cannot be set, its
arrays cannot be written or made writable); an object altered around that anyway is refused
by the kernel contract with ValueError. Each tampered case runs in a child process, so a
signal (what a kernel reading outside θ would raise) is a failure, not the end of the suite.
"""
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from helpers import BACKENDS

import fastmlp
from fastmlp import MLP
from fastmlp.architecture import Architecture

#: Each field of an Architecture, replaced by a value a kernel would misread.
TAMPERED = {
    "layer_sizes": (4, 800, 3),
    "offsets": [[0, 32], [40, 10_000]],
    "sizes": [4, 800, 3],
    "n_params": 10 ** 6,
    "hidden_activation": "swish",
    "output_activation": "relu",
    "loss": "hinge",
    "leaky_slope": 5.0,
}

PROBE = """
import json, sys
import numpy as np
import fastmlp
from fastmlp import MLP, optim
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # no swapping through a claim


def tampered(backend, field, value, when):
    if field in ("offsets", "sizes"):
        value = np.array(value, dtype=np.int64)
    if field == "layer_sizes":
        value = tuple(value)
    outcomes = {}
    for entry in ("train_epochs", "MLP.forward", "MLP.train_epochs"):
        net = MLP([4, 8, 3], backend=backend, random_state=0)
        X, Y = np.ones((6, 4)), np.eye(3)[[0, 1, 2, 0, 1, 2]]
        if when == "after use":  # checked in full once, then trusted while unchanged
            net.train_epochs(X, Y, [0.1], 2)
        if when == "written in place" and field in ("offsets", "sizes"):
            # a writable stand-in with the right values passes, then is written
            good = np.array(getattr(net.arch, field))
            object.__setattr__(net.arch, field, good)
            net.train_epochs(X, Y, [0.1], 2)
            good[...] = value
        else:
            object.__setattr__(net.arch, field, value)  # around the Architecture's refusal
        try:
            if entry == "train_epochs":
                opt = optim.Optimizer("sgd", 0.1)
                state = optim.OptimizerState.zeros(32 + 8 + 24 + 3, np.float64)
                fastmlp.get_backend(backend).train_epochs(net.arch, net.theta, X, Y, None,
                                                           None, 2, opt, state, [0.1])
            elif entry == "MLP.forward":
                net.forward(X)
            else:
                net.train_epochs(X, Y, [0.1], 2)
            outcomes[entry] = "accepted"
        except (ValueError, TypeError) as exc:
            outcomes[entry] = type(exc).__name__ + ": " + str(exc)
    return outcomes


for case in json.loads(sys.argv[1]):
    print(json.dumps({"case": case}), flush=True)  # a crash's culprit is the last printed
    print(json.dumps({"case": case, "outcomes": tampered(*case)}), flush=True)
"""


#: (field, when): tampered before the first call, after one (the contract trusts an object it
#: checked while its attributes are the same), or an array stand-in written after one.
TAMPERINGS = [(field, when) for field in sorted(TAMPERED) for when in ("before use", "after use")]
TAMPERINGS += [(field, "written in place") for field in ("offsets", "sizes")]


@pytest.mark.process
def test_a_tampered_architecture_is_refused_before_any_kernel():
    """Every backend × tampering, in one child process (a crash names its case)."""
    cases = [(backend, field, TAMPERED[field], when) for backend in BACKENDS
             for field, when in TAMPERINGS]
    run = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)],
                         capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    done = [line for line in lines if "outcomes" in line]
    assert run.returncode == 0, (f"the process ended ({run.returncode}) during "
                                 f"{lines[-1]['case'] if lines else 'its start'}: "
                                 f"{run.stderr[-2000:]}")
    assert len(done) == len(cases)
    for line in done:
        for entry, outcome in line["outcomes"].items():
            assert outcome.startswith("ValueError"), f"{entry} with {line['case']}: {outcome}"


def test_an_architecture_cannot_be_changed():
    arch = Architecture([4, 8, 3])
    for field in TAMPERED:
        with pytest.raises(AttributeError, match="immutable"):
            setattr(arch, field, TAMPERED[field])
        with pytest.raises(AttributeError, match="immutable"):
            delattr(arch, field)
    for array in (arch.offsets, arch.sizes):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 7
        with pytest.raises(ValueError, match="WRITEABLE"):
            array.flags.writeable = True


def test_an_architecture_is_rebuilt_when_unpickled():
    net = pickle.loads(pickle.dumps(MLP([4, 8, 3], hidden_activation="tanh", random_state=0)))
    arch = net.arch
    assert (arch.layer_sizes, arch.hidden_activation, arch.n_params) == ((4, 8, 3), "tanh", 67)
    assert not arch.offsets.flags.writeable
    with pytest.raises(AttributeError):
        arch.n_params = 1
    np.testing.assert_array_equal(arch.offsets, [[0, 32], [40, 64]])


@pytest.mark.parametrize("name", ["theta", "first"])
def test_mlp_refuses_replaced_parameter_arrays(name):
    net = MLP([4, 8, 3], random_state=0)
    X, Y = np.ones((6, 4)), np.eye(3)[[0, 1, 2, 0, 1, 2]]
    net.train_epochs(X, Y, [0.1], 2, "adam")
    if name == "theta":
        net.theta = np.zeros(5)
    else:
        net.optimizer_state.first = np.zeros(5)
    with pytest.raises(ValueError, match="has shape"):
        net.train_epochs(X, Y, [0.1], 2, "adam")


# -- hostile model files -----------------------------------------------------------------------
LOAD_PROBE = """
import json, resource, sys, time, tracemalloc
LIMIT = 3 << 30
import fastmlp
resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))  # an attempt to allocate fails here
tracemalloc.start()
for path, max_bytes in json.loads(sys.argv[1]):
    print(json.dumps({"path": path}), flush=True)  # a crash's culprit is the last printed
    tracemalloc.reset_peak()
    started = time.perf_counter()
    n_jobs = None
    try:
        model = fastmlp.load(path, max_bytes=max_bytes)
        outcome = "loaded"
        n_jobs = [v for k, v in model.get_params(deep=True).items() if k.endswith("n_jobs")
                  ] if hasattr(model, "get_params") else None
    except ValueError as exc:
        outcome = str(exc)
    print(json.dumps(dict(path=path, outcome=outcome, seconds=time.perf_counter() - started,
                          peak=tracemalloc.get_traced_memory()[1], n_jobs=n_jobs)),
          flush=True)
"""
MB = 1 << 20


def _saved(tmp_path):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    model = fastmlp.MLPClassifier((8,), max_iter=5, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    path = tmp_path / "good.fastmlp"
    fastmlp.save(model, path)
    return path


def _with_member(tmp_path, member, change):
    """A saved model whose `member` is replaced by change(its bytes)."""
    import zipfile

    source, target = _saved(tmp_path), tmp_path / f"altered-{member}.fastmlp"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w",
                                                         zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            new.writestr(info.filename, change(data) if info.filename == member else data)
    return target


def _npy_header(shape):
    """The .npy header of a float64 array of `shape` (no data after it)."""
    import io

    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f8", "fortran_order": False,
                                               "shape": shape})
    return out.getvalue()


def _declare_size(path, member, size):
    """Patch the central directory so `member` declares `size` uncompressed bytes."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    at = raw.find(b"PK\x01\x02")
    while at >= 0:
        name_length = int.from_bytes(raw[at + 28:at + 30], "little")
        if raw[at + 46:at + 46 + name_length] == name:
            raw[at + 24:at + 28] = size.to_bytes(4, "little")
        at = raw.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(raw))


def _loaded_in_child(files):
    """{name: (path, max_bytes)} loaded one after the other in one child process (with an
    address-space limit): {name: its outcome, seconds and traced peak}."""
    run = subprocess.run([sys.executable, "-c", LOAD_PROBE,
                          json.dumps([[str(p), m] for p, m in files.values()])],
                         capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0, (lines[-1:], run.stderr[-2000:])
    by_path = {line["path"]: line for line in lines if "outcome" in line}
    return {name: by_path[str(path)] for name, (path, _) in files.items()}


def _claim_architecture(data):
    return json.dumps({**json.loads(data), "layer_sizes": [10 ** 7, 10 ** 7, 3]}).encode()


def _cut_off(tmp_path):
    path = _with_member(tmp_path, "classes_.npy", lambda data: data + bytes(600 * MB))
    _declare_size(path, "classes_.npy", 1000)
    return path


@pytest.mark.process
def test_hostile_model_files_cost_neither_time_nor_memory(tmp_path):
    """Each file refused within a second, holding under 8 MB (one child loads them all):
    a zip bomb (theta.npy replaced by 600 MB of zeros, which compress to almost nothing)
    loaded with a 64 MB limit, refused on its declared size; the same bomb declaring 1 000
    bytes, cut off one byte past them; an .npy header claiming 10¹² float64 over a few bytes;
    metadata.json claiming layers of 10⁷ × 10⁷ (10¹⁴ parameters)."""
    files = {
        "bomb": (_with_member(tmp_path, "theta.npy",
                              lambda data: _npy_header((75 * MB,)) + bytes(600 * MB)), 64 * MB),
        "inflates": (_cut_off(tmp_path), 1 << 32),
        "shape": (_with_member(tmp_path, "loss_curve_.npy",
                               lambda data: _npy_header((10 ** 12,)) + bytes(64)), 1 << 32),
        "architecture": (_with_member(tmp_path, "metadata.json", _claim_architecture),
                         1 << 32),
    }
    out = _loaded_in_child(files)
    assert "member theta.npy declares" in out["bomb"]["outcome"]
    assert "over the limit of 67108864" in out["bomb"]["outcome"]
    assert out["inflates"]["outcome"] != "loaded"
    assert "loss_curve_.npy claims shape (1000000000000,)" in out["shape"]["outcome"]
    assert "parameters, over the limit" in out["architecture"]["outcome"]
    for name, result in out.items():
        assert result["seconds"] < 1.0 and result["peak"] < 8 * MB, (name, result)


def _pipeline_file(tmp_path, name, edit):
    """A saved pipeline (imputer and encoder for a text column, a scaler, a network) whose
    metadata edit(metadata) changed, its checksums recomputed — as anyone can."""
    import io as bytes_io
    import warnings
    import zipfile

    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from fastmlp import _archive

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"kind": rng.choice(["ab", "cd", "ef"], 60), "x": rng.normal(size=60)})
    y = (X["x"] > 0).astype(int)
    pre = ColumnTransformer([("text", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                                    OneHotEncoder()), ["kind"]),
                             ("num", StandardScaler(), ["x"])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Pipeline([("pre", pre), ("net", fastmlp.MLPClassifier((4,), max_iter=5,
                                                                      random_state=0))])
        model.fit(X, y)
    good = tmp_path / f"{name}-good.fastmlp"
    fastmlp.save(model, good)
    with zipfile.ZipFile(good) as archive:
        members = {n: archive.read(n) for n in archive.namelist() if n != "metadata.json"}
        metadata = json.loads(archive.read("metadata.json"))
    for key in ("sha256", "metadata_sha256"):
        metadata.pop(key)
    edit(metadata)
    buffer = bytes_io.BytesIO()
    _archive.writer(metadata, members)(buffer)
    path = tmp_path / f"{name}.fastmlp"
    path.write_bytes(buffer.getvalue())
    return path


def _find(node, key):
    """Every dict in a metadata tree that has `key`."""
    if isinstance(node, dict):
        if key in node:
            yield node
        for value in node.values():
            yield from _find(value, key)
    elif isinstance(node, list):
        for value in node:
            yield from _find(value, key)


def _huge_fit_dtype(metadata):
    for fitted in _find(metadata, "fit_dtype"):
        fitted["fit_dtype"] = "U500000000"


def _huge_kind(metadata):
    for array in _find(metadata, "kind"):
        array["kind"] = "U500000000"


def _many_jobs(metadata):
    for node in _find(metadata, "class"):
        if node["class"] == "ColumnTransformer":
            node["params"]["n_jobs"] = 32


def _deep(metadata):
    for _ in range(200):
        metadata["root"] = {"class": "Pipeline", "params": {"verbose": False},
                            "steps": [["inner", metadata["root"]]]}


@pytest.mark.process
def test_hostile_pipeline_files_cost_neither_time_nor_memory(tmp_path):
    """A few KB that would have loaded gigabytes or started processes (each file in one
    child with an address-space limit, refused or tamed within a second): a SimpleImputer's
    fit_dtype of a billion characters, an array's dtype the same, a ColumnTransformer asking
    for 32 processes (loaded, but parallelism is not taken from a file), 200 nested
    Pipelines (refused past MAX_DEPTH)."""
    files = {name: (_pipeline_file(tmp_path, name, edit), 1 << 32) for name, edit in (
        ("fit_dtype", _huge_fit_dtype), ("kind", _huge_kind), ("n_jobs", _many_jobs),
        ("deep", _deep))}
    out = _loaded_in_child(files)
    assert "'U500000000' is not one a fitted step can have" in out["fit_dtype"]["outcome"]
    assert "'U500000000' is not one a fitted step can have" in out["kind"]["outcome"]
    assert out["n_jobs"]["outcome"] == "loaded" and set(out["n_jobs"]["n_jobs"]) == {None}
    assert "nested more than 32 deep" in out["deep"]["outcome"]
    for name, result in out.items():
        assert result["seconds"] < 1.0 and result["peak"] < 64 * MB, (name, result)


def test_theta_must_have_the_length_the_layers_imply(tmp_path):
    path = _with_member(tmp_path, "theta.npy", lambda data: _npy_header((7,)) + bytes(56))
    with pytest.raises(ValueError, match=r"theta.npy has shape \(7,\), its metadata implies"):
        fastmlp.load(path)


# -- overflow on finite inputs --------------------------------------------------------------
def test_forward_names_the_layer_that_overflowed(backend):
    """1e200 × 1e200: finite inputs and weights whose product overflows. MLP.forward and the
    estimators' predict raise OverflowError naming the layer; the public kernel functions
    return the non-finite values, as their docstrings say."""
    net = MLP([3, 4, 2], output_activation="identity", loss="squared_error", backend=backend,
              random_state=0)
    W0, W1 = net.coefs_
    net.coefs_ = [np.full(W0.shape, 1e200), W1]
    X = np.full((2, 3), 1e200)
    with pytest.raises(OverflowError, match=r"layer 0 \(relu\) overflowed"):
        net.forward(X)
    out = np.empty((2, 4))
    with np.errstate(over="ignore", invalid="ignore"):  # NumPy's own warning, in numpy
        net.backend.forward_layer(X, net.coefs_[0], net.intercepts_[0], "relu", out)
    assert not np.isfinite(out).all()

    model = fastmlp.MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, backend=backend,
                                 random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(np.random.default_rng(0).normal(size=(20, 3)), np.arange(20.0))
    model._net.coefs_ = [np.full(W0.shape, 1e200), model._net.coefs_[1]]
    with pytest.raises(OverflowError, match=r"layer 0 \(relu\) overflowed"):
        model.predict(X)
