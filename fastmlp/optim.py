"""Optimizers as scikit-learn defines them, acting on the flat parameter vector.

    sgd   v ← μ v - η g;  θ ← θ + v            (Nesterov: θ ← θ + μ v - η g)
    adam  t ← t + 1; m ← β₁m + (1-β₁)g; s ← β₂s + (1-β₂)g²
          θ ← θ - η √(1-β₂ᵗ)/(1-β₁ᵗ) · m / (√s + ε)
    adamw t, m, s as adam; θ ← θ (1 - η λ) - η/(1-β₁ᵗ) · m / (√s/√(1-β₂ᵗ) + ε)
          (torch.optim.AdamW: weight decay λ apart from the gradient)

`Optimizer` holds the hyperparameters, `OptimizerState` the moments that persist between
epochs. `step` is the reference update every backend mirrors. Plain SGD (μ = 0, no Nesterov)
is θ ← θ - η g exactly as above, but keeps no velocity: it would only hold -η g, and not
reading and writing it saves a third of the update's memory traffic on large nets.
"""
import dataclasses
import functools
import math
import operator
from dataclasses import dataclass

import numpy as np

OPTIMIZERS = ("sgd", "adam", "adamw")
#: The estimators' names of Optimizer's fields where they are not the field's own
#: (scikit-learn's): Optimizer.from_params reads every other field by its name.
ESTIMATOR_NAMES = dict(name="solver", learning_rate="learning_rate_init",
                       nesterov="nesterovs_momentum", l2="alpha")


@dataclass(frozen=True)
class Optimizer:
    name: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    l2: float = 0.0
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 0.0  # adamw's, decoupled from the gradient (torch.optim.AdamW)

    @classmethod
    def from_params(cls, params):
        """The update rule an estimator's parameters (a get_params() dict, sgd or adam) ask
        for: each field read from its estimator name (ESTIMATOR_NAMES, else its own)."""
        return _checked(cls, _estimator_values(cls)(params))

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; expected one of {list(OPTIMIZERS)}")
        checks = {
            "learning_rate": self.learning_rate > 0,
            "momentum": 0 <= self.momentum <= 1,
            "l2": self.l2 >= 0,
            "beta_1": 0 <= self.beta_1 < 1,
            "beta_2": 0 <= self.beta_2 < 1,
            "epsilon": self.epsilon > 0,
            "weight_decay": self.weight_decay >= 0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not (ok and math.isfinite(value)):
                raise ValueError(f"invalid optimizer setting {name}={value!r}")


@functools.lru_cache(maxsize=None)
def _estimator_values(cls):
    """A function of an estimator's parameters giving cls's field values, in order (the
    parameters are validated already, so their values are cls's types or equal to them)."""
    return operator.itemgetter(*(ESTIMATOR_NAMES.get(f.name, f.name)
                                 for f in dataclasses.fields(cls)))


@functools.lru_cache(maxsize=64)
def _checked(cls, values):
    """cls of these field values, each as its field's type, checked once per values (an
    Optimizer is immutable): a run of partial_fit calls builds the same one each call."""
    return cls(*(f.type(value) for f, value in zip(dataclasses.fields(cls), values)))


@dataclass
class OptimizerState:
    """Velocity (sgd) or first moment (adam), second moment (adam) and the step count."""

    first: np.ndarray
    second: np.ndarray
    t: int = 0

    @classmethod
    def zeros(cls, n_params, dtype):
        return cls(np.zeros(n_params, dtype), np.zeros(n_params, dtype), 0)


def adam_step_size(opt, t):
    """η √(1-β₂ᵗ)/(1-β₁ᵗ): Adam's bias-corrected step size at update t (1-based)."""
    return opt.learning_rate * np.sqrt(1.0 - opt.beta_2**t) / (1.0 - opt.beta_1**t)


def step(theta, grad, opt, state):
    """Apply one update to theta in place (reference implementation)."""
    if opt.name == "sgd" and opt.momentum == 0 and not opt.nesterov:
        theta -= opt.learning_rate * grad
    elif opt.name == "sgd":
        v = state.first
        v *= opt.momentum
        v -= opt.learning_rate * grad
        if opt.nesterov:
            theta += opt.momentum * v - opt.learning_rate * grad
        else:
            theta += v
    elif opt.name == "adam":
        state.t += 1
        m, s = state.first, state.second
        m *= opt.beta_1
        m += (1 - opt.beta_1) * grad
        s *= opt.beta_2
        s += (1 - opt.beta_2) * grad * grad
        theta -= adam_step_size(opt, state.t) * m / (np.sqrt(s) + opt.epsilon)
    else:  # adamw, as torch.optim.AdamW: θ decays apart from g; ε beside the corrected √s
        state.t += 1
        theta *= 1 - opt.learning_rate * opt.weight_decay
        m, s = state.first, state.second
        m *= opt.beta_1
        m += (1 - opt.beta_1) * grad
        s *= opt.beta_2
        s += (1 - opt.beta_2) * grad * grad
        root = math.sqrt(1.0 - opt.beta_2 ** state.t)
        theta -= (opt.learning_rate / (1.0 - opt.beta_1 ** state.t)) * (
            m / (np.sqrt(s) / root + opt.epsilon))
