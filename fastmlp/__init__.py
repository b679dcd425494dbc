"""fastmlp: multilayer perceptrons trained on the CPU by compiled Numba and Cython kernels."""
from .activations import ACTIVATIONS
from .architecture import Architecture
from .backends import available_backends, get_backend
from .estimators import MLPClassifier, MLPRegressor
from .io import load, save
from .losses import LOSSES
from .model import MLP, DivergenceError
from .settings import config_context, get_config, set_config
from .show import show_config

__version__ = "0.1.0"

__all__ = ["ACTIVATIONS", "LOSSES", "Architecture", "DivergenceError", "MLP", "MLPClassifier",
           "MLPRegressor", "available_backends", "config_context", "get_backend", "get_config",
           "load", "save", "set_config", "show_config", "__version__"]
