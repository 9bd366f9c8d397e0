"""pyro-dvip: Disentangling Video with Independent Prediction, as a Pyro model and guide."""

from .build import RunError, load
from .checkpoint import CheckpointError
from .config import PRESETS, TrainConfig, make_config
from .elbo_check import ElboCheck, check_elbo
from .model import DVIP
from .objective import NegELBO, make_elbo
from .priors import FactoredMLPTransition, Transition
from .train import train

__all__ = [
    "DVIP",
    "PRESETS",
    "CheckpointError",
    "ElboCheck",
    "FactoredMLPTransition",
    "NegELBO",
    "RunError",
    "TrainConfig",
    "Transition",
    "check_elbo",
    "compare",
    "evaluate",
    "load",
    "make_config",
    "make_elbo",
    "train",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # evaluate/compare load matplotlib, seaborn, scikit-learn: only when asked for.
    if name in ("evaluate", "compare"):
        from . import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
