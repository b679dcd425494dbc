"""Past 32-bit sizes: more than 2³¹ rows through predict's path and the layer kernels, and
training over data of more than 2³¹ elements.

The compiled kernels index and count in 64 bits; BLAS takes 32-bit sizes, so a product over
more rows runs in slices (_layout.BLAS_ROWS). The probes' inputs are calloc'd zeros, read as
the zero page without taking memory; the rows probe writes its forward output (8 GiB of
float32) and needs about 11 GiB free, the training probe a few hundred MB of the 8 GiB it
maps. Each runs in a child process, skipped where that memory is not available.
"""
import json
import subprocess
import sys

import pytest
from helpers import COMPILED

pytestmark = [pytest.mark.slow, pytest.mark.process]  # 2³¹ rows, in a child

NEEDED_BYTES = 12 << 30
MAPPED_BYTES = 9 << 30  # the training probe's X (a heuristic overcommit refuses more than RAM)

PROBE = r"""
import json, sys
import numpy as np
import fastmlp
from fastmlp import MLP

backend = sys.argv[1]
n = 2**31 + 3
marks = np.array([0, 2**31 - 1, 2**31, n - 1])
X = np.zeros((n, 1), np.float32)
X[marks, 0] = [1, 2, 3, 4]
net = MLP([1, 1], output_activation="identity", loss="squared_error", dtype=np.float32,
          backend=backend)
net.coefs_ = [np.array([[2.0]], np.float32)]
net.intercepts_ = [np.array([0.5], np.float32)]
out = net.forward(X)
others = sum(int(np.count_nonzero(out[r0:r0 + (1 << 28), 0] != 0.5))
             for r0 in range(0, n, 1 << 28))
report = {"rows": out.shape[0], "marked": out[marks, 0].tolist(), "not_bias": others}
del out
delta = np.zeros((n, 1), np.float32)
delta[marks, 0] = 1
grad_W, grad_b = np.empty((1, 1), np.float32), np.empty(1, np.float32)
fastmlp.get_backend(backend).backward_layer(X, delta, net.coefs_[0], grad_W, grad_b)
report.update(grad_W=float(grad_W[0, 0]), grad_b=float(grad_b[0]))
print(json.dumps(report))
"""


TRAIN_PROBE = r"""
import json, sys
import numpy as np
from fastmlp import MLP

n, width = 2**21 + 5, 1024  # n·width > 2³¹ elements
X = np.zeros((n, width), np.float32)
X[-1, -1] = 1.0  # the last row's last element: past element 2³¹
Y = np.zeros((n, 1), np.float32)
Y[-1] = 1.0
net = MLP([width, 1], output_activation="identity", loss="squared_error", dtype=np.float32,
          backend=sys.argv[1])
net.theta[...] = 0
losses, event = net.train_epochs(X, Y, [0.5], batch_size=4096, optimizer="sgd")
print(json.dumps({"event": event, "W_last": float(net.coefs_[0][-1, 0]),
                  "W_others": float(np.abs(net.coefs_[0][:-1]).max()),
                  "b": float(net.intercepts_[0][0]), "loss": float(losses[0])}))
"""


def _available_bytes():
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 0


@pytest.mark.skipif(not COMPILED, reason="no compiled backend installed")
@pytest.mark.skipif(_available_bytes() < NEEDED_BYTES,
                    reason=f"needs {NEEDED_BYTES >> 30} GiB of available memory")
@pytest.mark.parametrize("backend", COMPILED)
def test_rows_past_two_to_the_31_are_all_computed(backend):
    done = subprocess.run([sys.executable, "-c", PROBE, backend], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["rows"] == 2**31 + 3
    assert report["marked"] == [2.5, 4.5, 6.5, 8.5]  # 2x + 0.5 on each side of 2³¹
    assert report["not_bias"] == 4  # every other row is 0·2 + 0.5
    assert report["grad_W"] == 1 + 2 + 3 + 4  # Σ x·δ over all rows, in three BLAS slices
    assert report["grad_b"] == 4


@pytest.mark.skipif(_available_bytes() < MAPPED_BYTES,
                    reason=f"needs {MAPPED_BYTES >> 30} GiB of available memory to map X")
def test_training_reads_rows_past_element_two_to_the_31(backend):
    """Only the last row has a target and an input: every zero row's δ is 0, so one SGD
    epoch moves the last weight and the bias by lr·1/5 in the last minibatch (5 rows)."""
    done = subprocess.run([sys.executable, "-c", TRAIN_PROBE, backend], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["event"] == "completed"
    assert report["W_last"] == pytest.approx(0.1, rel=1e-6)
    assert report["b"] == pytest.approx(0.1, rel=1e-6)
    assert report["W_others"] == 0
    assert report["loss"] == pytest.approx(0.5 / (2**21 + 5), rel=1e-5)  # ½·1²/5 · 5 / n
