"""Evaluation: the paper's Table 2 and Figures 2-3, plus factor-object alignment probes.

One file per measurement; ``run.evaluate`` runs them all on a run directory and on its
untrained floor (on the data of ``held_out``; ``outputs`` and ``report`` write what it found),
``compare.compare`` lays several evaluations side by side.
"""

from .compare import compare
from .options import EvalOptions

__all__ = ["EvalOptions", "compare", "evaluate"]


def __getattr__(name: str):
    # evaluate loads matplotlib, seaborn, scikit-learn: only when asked for (dvip --help is not)
    if name == "evaluate":
        from .run import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
