"""A network's fixed description: layer sizes, activations, loss, and the flat parameter layout.

The flat parameter vector holds every layer's weights and biases in one contiguous array:

θ = [W₀ (n₀·n₁, C order), b₀ (n₁), W₁, b₁, …]. coefs_/intercepts_ are views into θ, so an
optimizer updates all parameters in one sweep and L-BFGS sees the vector it expects.
"""
from __future__ import annotations

import numpy as np

from . import activations, losses
from .backends._layout import MAX_UNITS


def _frozen_array(values, shape):
    """An int64 array over immutable bytes: read-only, and it cannot be made writable."""
    return np.frombuffer(np.asarray(values, dtype=np.int64).tobytes(), np.int64).reshape(shape)


def layout(layer_sizes):
    """(offsets, n_params) of the flat layout for these layer sizes: offsets[l] = (start of
    W_l, start of b_l) in θ."""
    offsets, pos = [], 0
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        offsets.append((pos, pos + n_in * n_out))
        pos += n_in * n_out + n_out
    return offsets, pos


class Architecture:
    """A network's layer sizes, activations and loss, validated once, then immutable.

    Attributes cannot be set and the arrays cannot be written: backends read codes and
    offsets from it instead of re-checking, and the kernel contract checks it against its
    own layer sizes (_checks.check_architecture).

    Parameters
    ----------
    layer_sizes : sequence of int
        Units per layer, input first, output last.
    hidden_activation : str, default="relu"
        The hidden layers' activation (fastmlp.ACTIVATIONS).
    output_activation : str, default="softmax"
        The output layer's activation.
    loss : str, default="cross_entropy"
        The loss (fastmlp.LOSSES).
    leaky_slope : float in (0, 1), default=0.01
        Slope of leaky_relu for negative inputs.
    """

    def __init__(self, layer_sizes, hidden_activation="relu", output_activation="softmax",
                 loss="cross_entropy", leaky_slope=0.01):
        sizes = tuple(int(n) for n in layer_sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(
                f"layer_sizes needs at least an input and an output size, all >= 1; got {layer_sizes!r}"
            )
        if max(sizes) > MAX_UNITS:
            raise ValueError(f"layer_sizes {list(sizes)}: a layer may have at most {MAX_UNITS} "
                             "units (BLAS takes 32-bit sizes)")
        offsets, n_params = layout(sizes)
        set_ = super().__setattr__
        set_("layer_sizes", sizes)
        set_("n_params", n_params)
        #: (n_layers, 2) int64: start of W_l and of b_l in θ (what compiled kernels take).
        set_("offsets", _frozen_array(offsets, (-1, 2)))
        set_("sizes", _frozen_array(sizes, (-1,)))
        set_("hidden_activation", activations.check_activation(hidden_activation, hidden=True))
        set_("output_activation", activations.check_activation(output_activation))
        set_("loss", losses.check_loss(loss, output_activation))
        set_("leaky_slope", activations.check_leaky_slope(leaky_slope))

    def __setattr__(self, name, value):
        raise AttributeError(f"an Architecture is immutable: make a new one instead of setting "
                             f"{name}")

    def __delattr__(self, name):
        self.__setattr__(name, None)

    def __reduce__(self):  # rebuilt (and re-derived) when unpickled or copied
        return (Architecture, (self.layer_sizes, self.hidden_activation,
                               self.output_activation, self.loss, self.leaky_slope))

    def activation(self, layer: int) -> str:
        """Name the activation applied to the output of a layer.

        Parameters
        ----------
        layer : int
            The layer, 0-based.

        Returns
        -------
        name : str
            Its activation.
        """
        return self.output_activation if layer == self.n_layers - 1 else self.hidden_activation

    @property
    def codes(self) -> tuple[int, int, int]:
        """(hidden, output, loss) integer codes for compiled kernels."""
        return (activations.CODES[self.hidden_activation],
                activations.CODES[self.output_activation], losses.CODES[self.loss])

    def __repr__(self):
        return (f"Architecture({list(self.layer_sizes)}, {self.hidden_activation!r}, "
                f"{self.output_activation!r}, {self.loss!r}, leaky_slope={self.leaky_slope})")

    @property
    def n_layers(self) -> int:
        """The number of weight layers (layer sizes minus one)."""
        return len(self.layer_sizes) - 1

    def views(self, theta: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """View θ as weight matrices and bias vectors.

        Parameters
        ----------
        theta : ndarray of shape (n_params,)
            The flat parameter vector.

        Returns
        -------
        coefs : list of ndarray of shape (n_in, n_out)
            Views of the weights.
        intercepts : list of ndarray of shape (n_out,)
            Views of the biases.
        """
        coefs, intercepts = [], []
        for (w0, b0), n_in, n_out in zip(self.offsets, self.layer_sizes[:-1], self.layer_sizes[1:]):
            coefs.append(theta[w0:b0].reshape(n_in, n_out))
            intercepts.append(theta[b0:b0 + n_out])
        return coefs, intercepts

    def coef_mask(self, dtype: type = bool) -> np.ndarray:
        """Mark where θ holds weights.

        Parameters
        ----------
        dtype : dtype, default=bool
            The mask's dtype.

        Returns
        -------
        mask : ndarray of shape (n_params,)
            1 where θ holds a weight (penalised by L2), 0 where it holds a bias.
        """
        mask = np.zeros(self.n_params, dtype=dtype)
        for (w0, b0) in self.offsets:
            mask[w0:b0] = 1
        return mask
