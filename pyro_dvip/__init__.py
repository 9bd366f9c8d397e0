"""pyro-dvip: Disentangling Video with Independent Prediction, as a Pyro model and guide."""

from .model import DVIP
from .priors import FactoredMLPTransition, Transition

__all__ = ["DVIP", "FactoredMLPTransition", "Transition"]
__version__ = "0.1.0"
