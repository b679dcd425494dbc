"""The two compiled twins sit kernel for kernel on one interface (fastmlp/backends/_layout.py).

A kernel or a constant that exists in one engine only fails here unless it is on the
engine-specific list below, with its reason; a kernel both engines have names the same
reference function it mirrors in both. The Cython extension checks its C declarations
(_records.pxd) against _layout at import; that check is exercised here against a drifted
layout. The precision policy (elementwise maths in θ's dtype) is tested at a point where
evaluating through double gives a different float32.
"""
import ast
import re
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.backends import _layout

BACKENDS = Path(fastmlp.__file__).parent / "backends"

#: Kernels one engine has and the other has not, and why.
ENGINE_SPECIFIC = {
    "cython": {
        "_gemm": "the BLAS call through SciPy's or NumPy's BLAS (numba calls np.dot)",
        "_gemm_into": "_gemm with beta, to sum a product's row slices (numba adds np.dot's)",
        "_row_times": "one row's product as gemv (numba's np.dot chooses gemv itself)",
        "_exp": "exp in θ's dtype (numba's np.exp follows its argument's type)",
        "_log": "log in θ's dtype (as _exp)",
        "_sqrt": "sqrt in θ's dtype (as _exp)",
        "_tanh": "tanh in θ's dtype (as _exp)",
        "_bias_softmax_rows": "fuses bias, row max and shift of a softmax layer in one pass",
        "_derivative_and_sum": "fuses δ ⊙ g' with the layer below's bias-gradient sum",
        "_softmax_cross_entropy_delta": "fuses the usual classifier's loss, δ and bias sum",
        "_keep": "the guard's snapshot and restore, each thread its own slices",
        "_fuses": "plain SGD's update of W inside its gradient GEMM (beta, alpha): numba's "
                  "np.dot takes neither",
        "_fuse_plain_sgd": "the constants of that fused update, before the backward pass",
        "_weights_at": "reads Run.offsets (numba indexes the offsets array)",
        "_biases_at": "reads Run.offsets (as _weights_at)",
        "_train_epochs": "the typed entry that reads the bundles into a Run for nogil code",
        "_summed_gradient": "the typed entry of summed_gradient (as _train_epochs)",
        "_read_network": "one bundle's arrays as typed views, their addresses into the Run",
        "_read_data": "as _read_network, for the Data bundle",
        "_read_update": "as _read_network, for the Update bundle",
        "_read_workspace": "as _read_network, for the Workspace bundle",
        "_read_control": "as _read_network, for the Control bundle",
        "_run_epochs": "the epochs loop every thread of the OpenMP team runs (numba's "
                       "train_epochs is serial around its prange calls)",
        "forward_layer": "Python-callable _forward (numba's @njit functions are callable)",
        "backward_layer": "Python-callable _backward (as forward_layer)",
        "output_delta": "Python-callable _output_delta (as forward_layer)",
        "sparse_forward_layer": "Python-callable _sparse_forward (as forward_layer)",
        "_index": "reads an int32 or int64 CSR index array (numba specialises on the dtype)",
        "_index_of": "the address and width of a CSR index array, for the Run",
        "sparse_weight_gradient": "Python-callable _sparse_gradient (as forward_layer)",
        "_check_layout": "checks _records.pxd against _layout at import",
        "max_threads": "OpenMP's thread count",
        "phase_times": "the phase timers of a FASTMLP_PHASE_TIMERS=1 build",
        "use_ilp64_gemm": "NumPy's OpenBLAS GEMMs by address (_blas.py; numba's np.dot is "
                          "SciPy's)",
    },
    "numba": {
        "_cast": "rounds a value to an array's dtype inside @njit code",
        "_float_limits": "the dtype's smallest normal and epsilon, in that dtype (cython: "
                         "FLT_MIN/DBL_MIN, FLT_/DBL_EPSILON)",
        "_derivative": "g' of one output value (cython's output delta inlines it)",
        "_view": "a 2-D view of a flat buffer (cython indexes raw pointers)",
        "_forward_backward_chunks": "the split minibatch as one prange (cython: one team)",
        "_update_chunks": "the split update as one prange (cython: one team)",
        "_forward_backward_chunks_here": "the split minibatch on this thread (cython: a team "
                                         "of one runs _epoch without a parallel region)",
        "_update_chunks_here": "the split update on this thread (as above)",
        "_chunk_forward_backward": "one chunk of a split step (cython: _epoch's chunk loop)",
        "_chunk_update": "one slice of a split update (cython: _epoch's slice loop)",
        "_summed_part_losses": "the chunks' losses in order (cython: inline in _epoch)",
        "_restore": "the guard's restore (cython: _keep with restore, each thread its slices)",
        "_stop_requested": "the stop flag's acquire load (cython: fastmlp_stop_requested, C)",
        "_monotonic": "CLOCK_MONOTONIC for the time budget (cython: fastmlp_monotonic, C)",
    },
}
def _cython_functions():
    """{name: docstring} of every function defined in the Cython source."""
    source = (BACKENDS / "_cython_kernels.pyx").read_text()
    pattern = re.compile(r'^(?:cdef|def|cpdef)\s[^\n]*?\b(\w+)\((?:[^()]|\([^()]*\))*\)[^\n]*:\n'
                         r'(?:\s+"""(.*?)""")?', re.M | re.S)
    return {m.group(1): m.group(2) or "" for m in pattern.finditer(source)
            if not m.group(0).startswith(("cdef struct", "cdef enum"))}


def _numba_functions():
    tree = ast.parse((BACKENDS / "_numba_kernels.py").read_text())
    return {node.name: ast.get_docstring(node) or "" for node in tree.body
            if isinstance(node, ast.FunctionDef) and not node.name.endswith("_overload")}


def _mirrors(doc):
    found = re.search(r"Mirrors ([\w.]+)", doc)
    return found.group(1).rstrip(".") if found else None


def test_every_kernel_exists_in_both_engines_or_says_why_not():
    engines = {"cython": set(_cython_functions()), "numba": set(_numba_functions())}
    for engine, other in (("cython", "numba"), ("numba", "cython")):
        only_here = engines[engine] - engines[other]
        unexplained = only_here - set(ENGINE_SPECIFIC[engine])
        assert not unexplained, f"kernels only in {engine}, not on its list: {unexplained}"
        stale = set(ENGINE_SPECIFIC[engine]) - only_here
        assert not stale, f"{engine}'s engine-specific list names kernels it lacks: {stale}"


def test_shared_kernels_mirror_the_same_reference_function():
    cython, numba = _cython_functions(), _numba_functions()
    for kernel in _layout.KERNELS:
        assert _mirrors(cython[kernel.name]) == _mirrors(numba[kernel.name]) == kernel.mirrors, (
            kernel.name)


def _cython_parameters():
    """{name: parameter names} of every function of the Cython source, in definition order."""
    source = (BACKENDS / "_cython_kernels.pyx").read_text()
    pattern = re.compile(r"^(?:cdef|def|cpdef)\s[^\n]*?\b(\w+)\(((?:[^()]|\([^()]*\))*)\)", re.M)
    found = {}
    for m in pattern.finditer(source):
        if m.group(0).startswith(("cdef struct", "cdef enum")):
            continue
        params = re.sub(r"\[[^\]]*\]", "[]", m.group(2)).split(",")
        found[m.group(1)] = tuple(p.split("=")[0].split()[-1].lstrip("*&")
                                  for p in params if p.strip())
    return found


def _numba_parameters():
    return {name: tuple(a.arg for a in node.args.args) for name, node in _numba_nodes().items()}


def test_the_twins_follow_the_kernel_manifest():
    """Both twins define _layout.KERNELS, in its order, with its parameters: numba's
    exactly (but for its own, each said why), the cython twin's but for its pointers' sizes
    and its own (or, for the kernels that read its Run, the list the manifest gives)."""
    manifest = [k.name for k in _layout.KERNELS]
    engines = {"cython": _cython_parameters(), "numba": _numba_parameters()}
    shared = set(engines["cython"]) & set(engines["numba"])
    assert shared == set(manifest), ("kernels both twins define, not in _layout.KERNELS: "
                                     f"{shared - set(manifest)}; listed but missing: "
                                     f"{set(manifest) - shared}")
    for engine, parameters in engines.items():
        order = [name for name in parameters if name in shared]
        assert order == manifest, f"{engine} defines the shared kernels in another order"
    for kernel in _layout.KERNELS:
        numba = engines["numba"][kernel.name]
        assert tuple(p for p in numba if p not in kernel.numba_only) == kernel.parameters, (
            kernel.name, numba)
        cython = engines["cython"][kernel.name]
        if kernel.cython is not None:
            assert cython == kernel.cython, (kernel.name, cython)
            continue
        assert tuple(p for p in cython if p not in _layout.POINTER_SIZES
                     and p not in kernel.cython_only) == kernel.parameters, (kernel.name, cython)


def test_numba_reads_the_codes_and_size_rules_of_the_layout():
    from fastmlp.backends import _numba_kernels as nk

    for enum in _layout.ENUMS:
        for member in enum:
            assert getattr(nk, member.name) == member
    for name, value in _layout.SIZE_RULES.items():
        if name in ("NARROW_OUT", "NARROW_WORDS"):  # the cython twin's narrow-δ copy only
            assert not hasattr(nk, name)
        else:
            assert getattr(nk, name) == value
    assert _layout.Activation.SOFTMAX == fastmlp.activations.CODES["softmax"]
    assert [m.name.lower() for m in _layout.Loss] == list(fastmlp.losses.LOSSES)
    assert _layout.EVENTS == ("completed", "plateau", "diverged", "interrupted")


def test_cython_checks_its_declarations_against_the_layout(monkeypatch):
    ck = pytest.importorskip("fastmlp.backends._cython_kernels")
    ck._check_layout()  # as at import: the declarations match
    drifted = np.dtype([("rule", np.int64), ("l2", np.float64), ("momentum", np.float64),
                        ("beta_1", np.float64), ("beta_2", np.float64),
                        ("epsilon", np.float64)], align=True)
    monkeypatch.setitem(_layout.RECORDS, "Hyper", drifted)
    with pytest.raises(ImportError, match="Hyper"):
        ck._check_layout()
    monkeypatch.setitem(_layout.RECORDS, "Hyper", _layout.HYPER)
    monkeypatch.setitem(_layout.SIZE_RULES, "SMALL_WORK", 2048)
    with pytest.raises(ImportError, match="SIZE_RULES"):
        ck._check_layout()


def test_the_c_declarations_are_generated_from_the_layout():
    text = (BACKENDS / "_records.pxd").read_text()
    assert text == _layout.pxd_text(), ("_records.pxd is stale: regenerate it as "
                                        "_layout.pxd_text's docstring says, then rebuild")


#: The widest functions of the cython twin, past MAX_PARAMETERS: pointers and their sizes
#: where numba passes arrays, and the fusions only it has (gb_in, fused).
#: Bringing them down (one struct per layer's shape) is what is left of issue 41's twins.
WIDE_CYTHON = {"_backward": 13,
               "_gemm_into": 13}  # BLAS's own gemm arguments
MAX_PARAMETERS = 12


def test_kernels_take_bundles_and_at_most_twelve_parameters():
    import inspect

    from fastmlp.backends import _numba_kernels as nk

    assert list(inspect.signature(nk.train_epochs.py_func).parameters) == [
        "network", "data", "update", "workspace", "control"]
    too_many = {name: len(node.args.args) for name, node in _numba_nodes().items()
                if len(node.args.args) > MAX_PARAMETERS}
    assert not too_many, too_many
    wide = {name: len(params) for name, params in _cython_parameters().items()
            if len(params) > MAX_PARAMETERS}
    assert wide == WIDE_CYTHON, "a cython function past twelve parameters (or one fixed: " \
                                "shrink WIDE_CYTHON)"
    for bundle in _layout.BUNDLES:
        assert len(bundle._fields) <= 9


def _numba_nodes():
    tree = ast.parse((BACKENDS / "_numba_kernels.py").read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_logistic_and_tanh_are_evaluated_in_float32(backend):
    """Elementwise maths in θ's dtype, as the reference: at z = 17, e = exp(-z) is below half
    an ulp of 1, so 1/(1 + e) is exactly 1 in float32, but 0.99999994 when the sum and the
    division run in double and round once."""
    kernels = fastmlp.get_backend(backend)
    z = np.array([[17.0, 16.8, -17.0, 0.5, -3.0, 30.0]], np.float32)
    identity_w = np.eye(z.shape[1], dtype=np.float32)
    zero_b = np.zeros(z.shape[1], np.float32)
    ref = fastmlp.get_backend("numpy")
    for activation in ("logistic", "tanh"):
        out, expected = np.empty_like(z), np.empty_like(z)
        kernels.forward_layer(z, identity_w, zero_b, activation, out)
        ref.forward_layer(z, identity_w, zero_b, activation, expected)
        if activation == "logistic":
            np.testing.assert_array_equal(out[0, :2], [1.0, 1.0])
        # expf/tanhf and NumPy's float32 loops may differ by an ulp, never more
        np.testing.assert_array_max_ulp(out, expected, maxulp=1)
