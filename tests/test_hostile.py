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

import fastmlp
from fastmlp import MLP
from fastmlp.architecture import Architecture

ALL = ["numpy", *(b for b in ("cython", "numba") if b in fastmlp.available_backends())]

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
backend, field, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if field in ("offsets", "sizes"):
    value = np.array(value, dtype=np.int64)
if field == "layer_sizes":
    value = tuple(value)
outcomes = {}
for entry in ("train_epochs", "MLP.forward", "MLP.train_epochs"):
    net = MLP([4, 8, 3], backend=backend, random_state=0)
    object.__setattr__(net.arch, field, value)  # around the Architecture's own refusal
    X, Y = np.ones((6, 4)), np.eye(3)[[0, 1, 2, 0, 1, 2]]
    try:
        if entry == "train_epochs":
            opt = optim.Optimizer("sgd", 0.1)
            state = optim.OptimizerState.zeros(32 + 8 + 24 + 3, np.float64)
            fastmlp.get_backend(backend).train_epochs(net.arch, net.theta, X, Y, None, None,
                                                       2, opt, state, [0.1])
        elif entry == "MLP.forward":
            net.forward(X)
        else:
            net.train_epochs(X, Y, [0.1], 2)
        outcomes[entry] = "accepted"
    except (ValueError, TypeError) as exc:
        outcomes[entry] = type(exc).__name__ + ": " + str(exc)
print(json.dumps(outcomes))
"""


@pytest.mark.parametrize("field", sorted(TAMPERED))
@pytest.mark.parametrize("backend", ALL)
def test_a_tampered_architecture_is_refused_before_any_kernel(backend, field):
    run = subprocess.run([sys.executable, "-c", PROBE, backend, field,
                          json.dumps(TAMPERED[field])], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"the process ended ({run.returncode}): {run.stderr[-2000:]}"
    outcomes = json.loads(run.stdout.strip().splitlines()[-1])
    for entry, outcome in outcomes.items():
        assert outcome.startswith("ValueError"), f"{entry} with {field} tampered: {outcome}"


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
