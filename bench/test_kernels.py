"""forward_layer and backward_layer of every backend against a bare GEMM of the same shape."""
import numpy as np
import pytest
from bench.harness import BACKENDS, DTYPES, dtype_id

from fastmlp import get_backend
from fastmlp.backends import reference

SHAPES = [(128, 784, 256), (32, 64, 128), (1, 64, 32)]


def _operands(shape, dtype):
    n, n_in, n_out = shape
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n_in)).astype(dtype)
    W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    return A, W, b, np.empty((n, n_out), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("contender", BACKENDS + ["bare-gemm"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_layer(benchmark, shape, contender, dtype):
    A, W, b, out = _operands(shape, dtype)
    benchmark.group = f"forward-{'x'.join(map(str, shape))}-{dtype_id(dtype)}"
    if contender == "bare-gemm":
        benchmark(np.dot, A, W, out=out)
        return
    forward = get_backend(contender).forward_layer
    expected = reference.forward_layer(A, W, b, "relu", np.empty_like(out))
    np.testing.assert_allclose(forward(A, W, b, "relu", out), expected, rtol=1e-3, atol=1e-4)
    benchmark(forward, A, W, b, "relu", out)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("contender", BACKENDS + ["bare-gemms"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backward_layer(benchmark, shape, contender, dtype):
    A, W, b, out = _operands(shape, dtype)
    A = np.abs(A)  # a ReLU layer's output
    delta = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    gW, gb, d_in = np.empty_like(W), np.empty_like(b), np.empty_like(A)
    benchmark.group = f"backward-{'x'.join(map(str, shape))}-{dtype_id(dtype)}"
    if contender == "bare-gemms":
        benchmark(lambda: (np.dot(A.T, delta, out=gW), np.dot(delta, W.T, out=d_in)))
        return
    backward = get_backend(contender).backward_layer
    ref = [np.empty_like(gW), np.empty_like(gb), np.empty_like(d_in)]
    reference.backward_layer(A, delta, W, *ref, "relu")
    backward(A, delta, W, gW, gb, d_in, "relu")
    for got, want in zip((gW, gb, d_in), ref):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    benchmark(backward, A, delta, W, gW, gb, d_in, "relu")
