"""The sizes and choices of an evaluation, each declared once.

Every field of :class:`EvalOptions` carries its help text and range (``config.option``):
``dvip evaluate`` makes its options from them and :meth:`EvalOptions.validate` checks them.
This module imports no measurement, so that the command line reads it without their imports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import check_value
from ..config import option as config_option

# Probe targets: columns of ground_truth_targets' last axis (x, y, vx, vy). The headline probe
# decodes ``EvalOptions.probe_targets``; every set is also reported in ``alignment.by_target``.
PROBE_TARGETS = {
    "position": slice(0, 2),
    "velocity": slice(2, 4),
    "position+velocity": slice(0, 4),
}
# What a probe fits, by name (``Probe(model=...)``, ``dvip evaluate --probe``); the text is
# recorded with the measurements.
PROBE_MODELS = {
    "ridge": "ridge regression (alpha 1, standardised)",
    "mlp": "MLP 64-64 ReLU (L2 1e-3, early stopping; standardised)",
}


def option(default, help: str, **checks):
    """A field of :class:`EvalOptions`: what ``dvip evaluate --help`` says of it, its range."""
    return config_option(default, help, "evaluate", **checks)


def size(default, help: str, at_least: int = 1, **checks):
    """A count among :class:`EvalOptions`: at least 1 unless ``at_least`` says otherwise."""
    return option(default, help, at_least=at_least, **checks)


@dataclass
class EvalOptions:
    """Sizes of the measurements (defaults: a cpu-demo run in a few minutes on 2 cores)."""

    samples: int = size(
        5000, "(z_t, z_t+1) pairs for the MI and correlation; sets the number of held-out "
        "sequences.",
    )  # fmt: skip
    seed: int = option(0, "Seed of every measurement.")
    group_size: int | None = size(  # dvip evaluate --groups
        None, "Units per group for a one-factor (entangled) model.",
        default_text="the factor size of the matching factored model, config factor_dim",
    )  # fmt: skip
    partitions: int = size(20, "Random partitions tried for a one-factor model.")
    particles: int = size(4, "Posterior samples per sequence for the ELBO and its s.e.", at_least=2)
    iw_samples: int = size(16, "Importance samples of the tighter bound.")
    bound_sequences: int = size(128, "Held-out sequences the bounds are computed on.")
    bootstrap: int = size(200, "Bootstrap resamples for the MI interval; 0 = none.", at_least=0)
    select_pairs: int = size(
        1000, "Pairs on which a one-factor model's best MI partition is chosen."
    )
    intervention_pairs: int = size(256, "Sequence pairs swapped in the intervention test.")
    context: int | None = size(
        None, "Frames the prediction is conditioned on.", default_text="half the sequence"
    )
    rollouts: int = size(8, "Prior rollouts averaged per predicted sequence.")
    prediction_sequences: int = size(256, "Held-out sequences the prediction is scored on.")
    examples: int = size(4, "Sequences shown in the image grids and GIFs.")
    contrast_frames: int = size(
        64, "Posterior samples of held-out frames at which the decoder's Jacobian is taken for "
        "the object score (compositional contrast).",
    )  # fmt: skip
    probe_targets: str = option(
        "position", "What the headline probes decode from each factor (every set is also "
        "reported).", choices=tuple(PROBE_TARGETS),
    )  # fmt: skip
    probe: str = option(
        "ridge", "What every probe fits: ridge (linear) or an MLP, which also reads a digit "
        "coded non-linearly; judge either only against its own untrained floor.",
        choices=tuple(PROBE_MODELS),
    )  # fmt: skip
    held_out_seed: int | None = option(
        None, "Moving MNIST: measure on the test sequences of a run with this seed instead of "
        "this run's own, so runs of different seeds are measured on the same sequences (their "
        "ELBOs are then comparable).", default_text="the run's seed",
    )  # fmt: skip
    device: str = option("cpu", "Where the models are measured.", choices=("cpu", "cuda"))
    batch_size: int = 256  # sequences per forward pass; not an option of dvip evaluate

    def validate(self) -> None:
        """Raise ``ValueError('option: problem')`` for the first value out of its choices or
        range."""
        for field in dataclasses.fields(self):
            check_value(field.name, getattr(self, field.name), field.metadata)
