"""A network's fixed description: layer sizes, activations, loss, and the flat parameter layout.

The flat parameter vector holds every layer's weights and biases in one contiguous array:

θ = [W₀ (n₀·n₁, C order), b₀ (n₁), W₁, b₁, …]. coefs_/intercepts_ are views into θ, so an
optimizer updates all parameters in one sweep and L-BFGS sees the vector it expects.
"""
import numpy as np

from . import activations, losses


class Architecture:
    """Validated once; backends read codes and offsets from it instead of re-checking."""

    def __init__(self, layer_sizes, hidden_activation="relu", output_activation="softmax",
                 loss="cross_entropy", leaky_slope=0.01):
        sizes = tuple(int(n) for n in layer_sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(
                f"layer_sizes needs at least an input and an output size, all >= 1; got {layer_sizes!r}"
            )
        self.layer_sizes = sizes
        offsets, pos = [], 0
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            offsets.append((pos, pos + n_in * n_out))
            pos += n_in * n_out + n_out
        self.n_params = pos
        #: (n_layers, 2) int64: start of W_l and of b_l in θ (what compiled kernels take).
        self.offsets = np.array(offsets, dtype=np.int64).reshape(-1, 2)
        self.sizes = np.array(sizes, dtype=np.int64)
        self.hidden_activation = activations.check_activation(hidden_activation, hidden=True)
        self.output_activation = activations.check_activation(output_activation)
        self.loss = losses.check_loss(loss, output_activation)
        self.leaky_slope = activations.check_leaky_slope(leaky_slope)

    def activation(self, layer):
        """Activation applied to the output of layer `layer` (0-based)."""
        return self.output_activation if layer == self.n_layers - 1 else self.hidden_activation

    @property
    def codes(self):
        """(hidden, output, loss) integer codes for compiled kernels."""
        return (activations.CODES[self.hidden_activation],
                activations.CODES[self.output_activation], losses.CODES[self.loss])

    def __repr__(self):
        return (f"Architecture({list(self.layer_sizes)}, {self.hidden_activation!r}, "
                f"{self.output_activation!r}, {self.loss!r}, leaky_slope={self.leaky_slope})")

    @property
    def n_layers(self):
        return len(self.layer_sizes) - 1

    def views(self, theta):
        """(coefs, intercepts): lists of views of θ with shapes (n_in, n_out) and (n_out,)."""
        coefs, intercepts = [], []
        for (w0, b0), n_in, n_out in zip(self.offsets, self.layer_sizes[:-1], self.layer_sizes[1:]):
            coefs.append(theta[w0:b0].reshape(n_in, n_out))
            intercepts.append(theta[b0:b0 + n_out])
        return coefs, intercepts

    def coef_mask(self, dtype=bool):
        """1 where θ holds a weight (penalised by L2), 0 where it holds a bias."""
        mask = np.zeros(self.n_params, dtype=dtype)
        for (w0, b0) in self.offsets:
            mask[w0:b0] = 1
        return mask
