"""Activation functions and their derivatives, written from the activation's *output*.

The reference formulas (NumPy, in place) that every backend must reproduce. Derivatives take
the output A = g(Z), as in the article's section on activation functions, so the
pre-activation Z never has to be kept:

    logistic   g'(z) = A (1 - A)
    tanh       g'(z) = 1 - A^2
    relu       g'(z) = [A > 0]
    leaky_relu g'(z) = 1 if A > 0 else a     (0 < a < 1 keeps the sign of z in A)

softmax couples its outputs, so it has no elementwise derivative: it is only an output
activation, and `losses.output_delta` applies its Jacobian. exp (scikit-learn's log link for
the Poisson loss) is only an output activation too, paired with that loss.
"""
import numpy as np

ACTIVATIONS = ("identity", "logistic", "tanh", "relu", "leaky_relu", "softmax", "exp")
HIDDEN_ACTIVATIONS = ACTIVATIONS[:5]
#: Integer codes used by the compiled backends (position in ACTIVATIONS).
CODES = {name: code for code, name in enumerate(ACTIVATIONS)}


def check_activation(name, hidden=False):
    allowed = HIDDEN_ACTIVATIONS if hidden else ACTIVATIONS
    if name not in allowed:
        kind = "hidden activation" if hidden else "activation"
        raise ValueError(f"unknown {kind} {name!r}; expected one of {list(allowed)}")
    return name


def check_leaky_slope(leaky_slope):
    slope = float(leaky_slope)
    if not 0.0 < slope < 1.0:
        raise ValueError(f"leaky_slope must be in (0, 1), got {leaky_slope!r}")
    return slope


def identity(Z, leaky_slope):
    return Z


def logistic(Z, leaky_slope):
    # exp(-|z|) never overflows; both branches are exact in their half-line.
    e = np.exp(-np.abs(Z))
    np.divide(np.where(Z >= 0, 1.0, e), 1.0 + e, out=Z, casting="unsafe")
    return Z


def tanh(Z, leaky_slope):
    return np.tanh(Z, out=Z)


def relu(Z, leaky_slope):
    return np.maximum(Z, 0, out=Z)


def leaky_relu(Z, leaky_slope):
    Z[Z < 0] *= leaky_slope
    return Z


def softmax(Z, leaky_slope):
    # Shift by the row maximum (log-sum-exp trick): exp never overflows, the sum is >= 1.
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def exp(Z, leaky_slope):
    return np.exp(Z, out=Z)


FORWARD = {
    "identity": identity,
    "logistic": logistic,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "softmax": softmax,
    "exp": exp,
}


def activate(Z, name, leaky_slope=0.01):
    """Apply activation `name` to Z in place and return it."""
    return FORWARD[name](Z, leaky_slope)


DERIVATIVE = {
    "identity": lambda A, a: np.ones_like(A),
    "logistic": lambda A, a: A * (1 - A),
    "tanh": lambda A, a: 1 - A * A,
    "relu": lambda A, a: (A > 0).astype(A.dtype),
    "leaky_relu": lambda A, a: np.where(A > 0, 1, a).astype(A.dtype),
}


def derivative(A, name, leaky_slope=0.01):
    """g'(z) computed from the output A = g(z) (elementwise activations only)."""
    if name not in DERIVATIVE:
        raise ValueError(f"{name} is only an output activation: losses.delta pairs it with "
                         "its loss")
    return DERIVATIVE[name](A, leaky_slope)
