"""Evaluation: the paper's Table 2 and Figures 2-3, plus factor-object alignment probes.

One file per measurement; ``run.evaluate`` runs them all on a run directory and on its
untrained floor (on the data of ``held_out``; ``outputs`` and ``report`` write what it found),
``compare.compare`` lays several evaluations side by side.
"""

from .compare import compare
from .run import EvalOptions, evaluate

__all__ = ["EvalOptions", "compare", "evaluate"]
