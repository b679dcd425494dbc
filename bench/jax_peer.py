"""JAX as a peer in the benchmarks: the strongest "whole epoch compiled" alternative.

`step(workload, dtype, X, Y)` runs a workload's SGD steps as one `jax.jit` call over
`jax.lax.scan` (the same network, loss and learning rate as fastmlp's contender);
`DigitsFit` is scikit-learn's digits fit — 200 adam epochs, batch 200, shuffled each epoch,
L2 1e-4 — with every epoch one scan and all the epochs one jitted call. Both are compiled
ahead of time (`jit(...).lower(...).compile()`), so the compile is timed apart
(`compile_seconds`) and the timed calls run only the compiled code. JAX is optional:
`available()` is False without it and the benchmarks skip its rows, saying so.
"""
import time

import numpy as np


def available():
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64; float32 as given
    return jax


def _init(rng, sizes, dtype):
    """Glorot-uniform weights and zero biases (scikit-learn's initialisation)."""
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(6.0 / (n_in + n_out))
        params.append((rng.uniform(-bound, bound, (n_in, n_out)).astype(dtype),
                       np.zeros(n_out, dtype)))
    return params


def _loss(jax, params, x, y, w):
    """Mean softmax cross-entropy over the rows of weight w (0: padding), ReLU hidden."""
    a = x
    for W, b in params[:-1]:
        a = jax.nn.relu(a @ W + b)
    W, b = params[-1]
    log_p = jax.nn.log_softmax(a @ W + b, axis=1)
    return -(w * (y * log_p).sum(axis=1)).sum() / w.sum()


def step(workload, dtype, X, Y, learning_rate=1e-3):
    """Contender: workload.steps SGD steps in one compiled call; None if jax is absent. The
    callable's compile_seconds is the ahead-of-time compile."""
    if not available():
        return None
    jax = _jax()
    jnp = jax.numpy
    b, steps = workload.batch, workload.steps
    params = jax.tree_util.tree_map(jnp.asarray, _init(np.random.default_rng(0),
                                                       workload.layers, dtype))
    Xs = jnp.asarray(X[:steps * b].reshape(steps, b, -1))
    Ys = jnp.asarray(Y[:steps * b].reshape(steps, b, -1))
    ones = jnp.ones(b, dtype)
    grad = jax.grad(lambda p, x, y: _loss(jax, p, x, y, ones))
    lr = jnp.asarray(learning_rate, dtype)

    def epoch(p, Xs, Ys):
        def one(p, xy):
            g = grad(p, *xy)
            return jax.tree_util.tree_map(lambda w, gw: w - lr * gw, p, g), None

        return jax.lax.scan(one, p, (Xs, Ys))[0]

    started = time.perf_counter()
    compiled = jax.jit(epoch).lower(params, Xs, Ys).compile()
    compile_seconds = time.perf_counter() - started
    state = [params]

    def run():
        state[0] = jax.block_until_ready(compiled(state[0], Xs, Ys))

    run.compile_seconds = compile_seconds
    return run


class DigitsFit:
    """scikit-learn's default MLPClassifier fit of a problem, in JAX: hidden (100,) ReLU,
    adam (lr 1e-3, β 0.9/0.999, ε 1e-8), L2 alpha 1e-4 as scikit-learn adds it, batch
    min(200, n), `epochs` epochs each over a fresh permutation — one compiled call for all
    of them. No early stop: every epoch runs (scikit-learn's digits fit runs all 200 too)."""

    def __init__(self, X, y, dtype, epochs=200, hidden=(100,), batch=200, alpha=1e-4, seed=0):
        jax = self.jax = _jax()
        jnp = jax.numpy
        n = X.shape[0]
        classes = np.unique(y)
        Y = (y[:, None] == classes[None, :]).astype(dtype)
        batch = min(batch, n)
        n_batches = -(-n // batch)
        pad = n_batches * batch - n  # the last minibatch padded with rows of weight 0
        self.X = jnp.asarray(np.concatenate([X, np.zeros((pad, X.shape[1]), dtype)]))
        self.Y = jnp.asarray(np.concatenate([Y, np.zeros((pad, Y.shape[1]), dtype)]))
        self.w = jnp.asarray(np.r_[np.ones(n, dtype), np.zeros(pad, dtype)])
        self.sizes = (X.shape[1], *hidden, len(classes))
        self.dtype, self.epochs, self.n, self.classes = dtype, epochs, n, classes
        self.orders = jnp.asarray(np.stack([  # the real rows shuffled, the padding last
            np.r_[np.random.default_rng([seed, e]).permutation(n), np.arange(n, n + pad)]
            for e in range(epochs)]).reshape(epochs, n_batches, batch))
        grad = jax.value_and_grad(lambda p, x, y, w: _loss(jax, p, x, y, w)
                                  + 0.5 * alpha * sum((W * W).sum() for W, _ in p) / w.sum())
        lr, b1, b2, eps = (jnp.asarray(v, dtype) for v in (1e-3, 0.9, 0.999, 1e-8))
        Xd, Yd, wd = self.X, self.Y, self.w

        def fit(params, orders):
            zeros = jax.tree_util.tree_map(jnp.zeros_like, params)

            def minibatch(carry, rows):
                p, m, v, t = carry
                loss, g = grad(p, Xd[rows], Yd[rows], wd[rows])
                t = t + 1
                m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
                v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
                step = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                p = jax.tree_util.tree_map(lambda p, m, v: p - step * m / (jnp.sqrt(v) + eps),
                                           p, m, v)
                return (p, m, v, t), loss

            def epoch(carry, rows):
                return jax.lax.scan(minibatch, carry, rows)

            carry, losses = jax.lax.scan(epoch, (params, zeros, zeros, jnp.asarray(0, dtype)),
                                         orders)
            return carry[0], losses

        params = jax.tree_util.tree_map(jnp.asarray,
                                        _init(np.random.default_rng(seed), self.sizes, dtype))
        started = time.perf_counter()
        self._fit = jax.jit(fit).lower(params, self.orders).compile()
        self.compile_seconds = time.perf_counter() - started
        self.initial = params

    def fit(self):
        """All the epochs; returns self with params_ (a list of (W, b)) and losses_."""
        params, losses = self.jax.block_until_ready(self._fit(self.initial, self.orders))
        self.params_ = [(np.asarray(W), np.asarray(b)) for W, b in params]
        self.losses_ = np.asarray(losses)
        return self

    def predict(self, X):
        a = np.asarray(X, self.dtype)
        for W, b in self.params_[:-1]:
            a = np.maximum(a @ W + b, 0)
        W, b = self.params_[-1]
        return self.classes[np.argmax(a @ W + b, axis=1)]

    def score(self, X, y):
        return float(np.mean(self.predict(X) == y))
