"""PyTorch as the oracle of what scikit-learn lacks: AdamW (decoupled weight decay), one and
several steps from the same weights and gradients, every backend, float64 to 1e-10 and
float32 to 1e-5. PyTorch is a test dependency only (`pip install torch==2.13.0`): without it
these are skipped."""
import numpy as np
import pytest
from helpers import BACKENDS

from fastmlp import MLP
from fastmlp.optim import Optimizer

torch = pytest.importorskip("torch")

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1, 2.0])
def test_adamw_steps_are_torchs(backend, dtype, weight_decay):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.integers(0, 3, 40)]
    net = MLP([6, 9, 3], "tanh", "softmax", "cross_entropy", dtype=dtype, backend=backend,
              random_state=0)
    oracle = MLP([6, 9, 3], "tanh", "softmax", "cross_entropy", dtype=np.float64,
                 backend="numpy", random_state=0)
    oracle.theta[:] = net.theta
    lr, steps = 0.05, 4
    opt = Optimizer("adamw", lr, beta_1=0.8, beta_2=0.99, epsilon=1e-7,
                    weight_decay=weight_decay)
    # ours: `steps` epochs of one full-batch minibatch each, one call
    net.train_epochs(X, Y, [lr] * steps, batch_size=len(X), optimizer=opt)
    # torch's AdamW on the same θ, fed the mean gradient at its own θ each step
    p = torch.tensor(oracle.theta.astype(dtype), requires_grad=True)
    adamw = torch.optim.AdamW([p], lr=lr, betas=(0.8, 0.99), eps=1e-7,
                              weight_decay=weight_decay)
    for _ in range(steps):
        oracle.theta[:] = p.detach().numpy()
        _, grad_coefs, grad_intercepts = oracle.gradients(X.astype(np.float64), Y, None,
                                                          reduction="mean")
        grad = np.concatenate([g.ravel() for pair in zip(grad_coefs, grad_intercepts)
                               for g in pair])
        p.grad = torch.tensor(grad.astype(dtype))
        adamw.step()
    expected = p.detach().numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(net.theta, expected, rtol=0, atol=TOLERANCE[dtype] * scale)
