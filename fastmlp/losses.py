"""Loss functions and the output-layer delta δ_out = ∂L/∂z_out (reference formulas).

Per sample, summed over the outputs (article: loss functions):

    squared_error         L = ½ Σ (y - r)²
    cross_entropy         L = -Σ r ln y                      (probabilities, softmax output)
    binary_cross_entropy  L = -Σ [r ln y + (1 - r) ln(1 - y)] (logistic output)
    poisson               L = Σ [r ln(r / y) - r + y]       (exp output; r >= 0)

poisson is half the Poisson deviance, as scikit-learn's MLPRegressor(loss="poisson")
defines it (with its r ln r - r term, 0 ln 0 = 0).

δ_out = ∂L/∂y ⊙ g'(y) for elementwise output activations and y ⊙ (u - Σ y u), u = ∂L/∂y,
for softmax. The canonical pairs collapse to δ = y - r; each other pair below is the same
product simplified so that no term divides by an output that may round to 0 or 1.
The log losses read outputs clipped to [eps, 1 - eps], as scikit-learn's do (clipped); the
Poisson loss's logarithm takes max(y, tiny): a saturated output gives a finite loss, never inf.
"""
import numpy as np
from scipy.special import xlogy

from .activations import derivative

LOSSES = ("squared_error", "cross_entropy", "binary_cross_entropy", "poisson")
#: Integer codes used by the compiled backends (position in LOSSES).
CODES = {name: code for code, name in enumerate(LOSSES)}

# Which output activations a loss is defined for: the log losses need outputs in (0, 1).
VALID_OUTPUTS = {
    "squared_error": ("identity", "logistic", "tanh", "relu", "leaky_relu", "softmax"),
    "cross_entropy": ("softmax", "logistic"),
    "binary_cross_entropy": ("logistic", "softmax"),
    "poisson": ("exp",),
}
#: What a loss needs of its outputs, for check_loss's message.
NEEDS = {"cross_entropy": "outputs in (0, 1)", "binary_cross_entropy": "outputs in (0, 1)",
         "squared_error": "an output it is defined for", "poisson": "positive outputs (a log link)"}


def check_loss(loss, output_activation):
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {list(LOSSES)}")
    if output_activation not in VALID_OUTPUTS[loss]:
        raise ValueError(
            f"loss {loss!r} needs {NEEDS[loss]}: output activation must be one of "
            f"{list(VALID_OUTPUTS[loss])}, got {output_activation!r}"
        )
    return loss


def _log(Y):
    return np.log(np.maximum(Y, np.finfo(Y.dtype).tiny))


def clipped(A_out):
    """Probabilities as the log losses read them: within [eps, 1 - eps] of their dtype, as
    scikit-learn's log losses clip them — so a saturated sample costs at most -ln(eps)
    (36.04 in float64, 15.94 in float32), and every rule that reads the loss (tol, adaptive,
    L-BFGS, loss_curve_) decides as scikit-learn's does. The gradient is not clipped."""
    eps = np.finfo(A_out.dtype).eps
    return np.clip(A_out, eps, 1 - eps)


def sample_losses(A_out, Y, loss):
    """Per-sample loss, shape (n_samples,), in the dtype of A_out."""
    if loss == "squared_error":
        return 0.5 * np.sum((A_out - Y) ** 2, axis=1)
    if loss == "cross_entropy":
        return -np.sum(Y * np.log(clipped(A_out)), axis=1)
    if loss == "poisson":  # xlogy(r, r) - r ln y - r + y, the log of y kept finite
        return np.sum(xlogy(Y, Y) - Y * _log(A_out) - Y + A_out, axis=1)
    P = clipped(A_out)
    return -np.sum(Y * np.log(P) + (1 - Y) * np.log(1 - P), axis=1)


def _delta_logistic(A, Y, loss):
    if loss == "binary_cross_entropy":
        return A - Y  # canonical: (-r/y + (1-r)/(1-y)) · y(1-y)
    if loss == "cross_entropy":
        return -Y * (1 - A)  # (-r/y) · y(1-y)
    return (A - Y) * A * (1 - A)


def _delta_softmax(A, Y, loss):
    if loss == "cross_entropy":
        return A * Y.sum(axis=1, keepdims=True) - Y  # canonical; = y - r for one-hot r
    if loss == "squared_error":
        u = A - Y
    else:  # binary_cross_entropy, u = y ⊙ ∂L/∂y
        u = -Y + (1 - Y) * A / np.maximum(1 - A, np.finfo(A.dtype).tiny)
        return u - A * u.sum(axis=1, keepdims=True)
    return A * (u - np.sum(A * u, axis=1, keepdims=True))


def delta(A_out, Y, activation, loss, leaky_slope=0.01):
    """δ_out for one batch (unweighted), as a new array."""
    if activation == "softmax":
        return _delta_softmax(A_out, Y, loss)
    if activation == "logistic":
        return _delta_logistic(A_out, Y, loss)
    if activation == "exp":  # poisson, canonical: (1 - r/y) · y
        return A_out - Y
    # identity, tanh, relu, leaky_relu: only squared_error is defined.
    return (A_out - Y) * derivative(A_out, activation, leaky_slope)


__all__ = ["LOSSES", "CODES", "VALID_OUTPUTS", "check_loss", "sample_losses", "delta"]
