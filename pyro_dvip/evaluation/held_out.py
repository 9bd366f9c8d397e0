"""The held-out sequences an evaluation measures on, and how the report describes them."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..build import RunError
from ..config import TrainConfig
from .mutual_info import MIN_PAIRS
from .posterior import held_out_sequences, held_out_video

if TYPE_CHECKING:
    from .run import EvalOptions


def held_out_data(run_dir: Path, config: TrainConfig, opts: EvalOptions):
    """The held-out sequences (on CPU), their description for the report, and the options to
    measure with: ``samples`` capped, with a note, when a video test split holds fewer pairs."""
    num_sequences = max(4, math.ceil(opts.samples / (config.seq_len - 1)))
    if config.data is None:
        seed = config.seed if opts.held_out_seed is None else opts.held_out_seed
        held_out = {"data": "moving mnist", "source": "Moving MNIST from the test digits, the "
                    f"test sequences of a run with seed {seed}", "seed": seed,
                    "notes": []}  # fmt: skip
        if config.scene == "discs":
            held_out.update(data="moving discs", source=(
                f"moving discs ({config.disc_colours} colours, textured background), the test "
                f"sequences of a run with seed {seed}"
            ), notes=[
                "objects are discs: 'digit o' in the tables is disc o (disc 0 in front); a "
                "position is its bounding box's top-left corner"
            ])  # fmt: skip
        return held_out_sequences(config, num_sequences, run_seed=seed), held_out, opts
    if opts.held_out_seed is not None:
        raise ValueError(
            "held_out_seed: applies to Moving MNIST runs only; a video run is tested on its "
            "own test split"
        )
    try:
        data = held_out_video(config, num_sequences)
    except ValueError as e:  # the videos moved or became unreadable since training
        raise RunError(f"{run_dir}: cannot read the run's video test split: {e}") from e
    notes = []
    available, pairs = len(data.frames), len(data.frames) * (config.seq_len - 1)
    if available < num_sequences:
        notes.append(
            f"the test split holds {available} sequences, fewer than the {num_sequences} "
            "asked for: all of them are used"
        )
    if pairs <= MIN_PAIRS:
        notes.append(
            f"the test split holds {pairs} (z_t, z_t+1) pairs, too few for the MI (KSG with "
            f"k = {MIN_PAIRS} needs more): the MI is not computable; the other measurements "
            "are made (for the MI, train with more held out: --test-fraction, longer or more "
            "clips)"
        )
    elif pairs < opts.samples:
        notes.append(
            f"MI and correlation on all {pairs} (z_t, z_t+1) pairs of the test split, not the "
            f"{opts.samples} of --samples"
        )
        opts = replace(opts, samples=pairs)
    held_out = {
        "data": "video",
        "source": f"the test split of the video `{config.data}`: split by {config.split}, "
        f"test fraction {config.test_fraction:g}, {config.fps:g} fps, seed {config.seed}; no "
        "training frame",
        "notes": notes,
    }
    return data, held_out, opts
