"""pyro-dvip: Disentangling Video with Independent Prediction, as a Pyro model and guide."""

from .checkpoint import CheckpointError
from .config import PRESETS, TrainConfig, make_config
from .model import DVIP
from .objective import NegELBO, make_elbo
from .priors import FactoredMLPTransition, Transition
from .train import RunError, load, train

__all__ = [
    "DVIP",
    "PRESETS",
    "CheckpointError",
    "FactoredMLPTransition",
    "NegELBO",
    "RunError",
    "TrainConfig",
    "Transition",
    "load",
    "make_config",
    "make_elbo",
    "train",
]
__version__ = "0.1.0"
