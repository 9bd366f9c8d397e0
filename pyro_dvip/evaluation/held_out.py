"""The held-out sequences an evaluation measures on, and how the report describes them."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..build import TEST_SEED_OFFSET, RunError
from ..config import TrainConfig
from ..data import MovingMNISTBatch, load_digits, make_test_set, make_video_data
from ..data.discs import disc_options, make_disc_test_set
from .mutual_info import MIN_PAIRS
from .options import EvalOptions


def held_out_sequences(
    config: TrainConfig,
    num_sequences: int,
    seq_len: int | None = None,
    run_seed: int | None = None,
) -> MovingMNISTBatch:
    """Held-out Moving MNIST sequences with ground truth, from the test digits and the run's
    test seed (the digits never seen in training), on CPU. ``run_seed`` draws instead the
    sequences that a run with that seed would be tested on: runs of different seeds then see
    the same sequences. The disc scene's come from the same test seed (its discs have no
    training set to hold out from, only sequences never drawn in training)."""
    seed = (config.seed if run_seed is None else run_seed) + TEST_SEED_OFFSET
    if config.scene == "discs":
        return make_disc_test_set(num_sequences, seed=seed, **disc_options(config, seq_len))
    test_digits, test_labels = load_digits("test", config.mnist_root)
    return make_test_set(
        test_digits,
        test_labels,
        num_sequences,
        seed=seed,
        image_size=config.image_size,
        channels=config.channels,
        num_digits=config.num_digits,
        seq_len=seq_len or config.seq_len,
        speed=config.digit_speed,
        arena=config.arena,
        identical=config.identical_digits,
    )


@dataclass
class VideoSequences:
    """Held-out sequences of a video run: frames only (real video has no ground truth)."""

    frames: torch.Tensor  # (N, T, 3, S, S) in [0, 1]

    def to(self, device: torch.device | str) -> VideoSequences:
        return replace(self, frames=self.frames.to(device))


def held_out_video(config: TrainConfig, num_sequences: int) -> VideoSequences:
    """At most ``num_sequences`` sequences of a video run's test split (held-out clips, or the
    held-out end of every clip: never a training frame), cut and decoded with the run's own
    settings and seed, on CPU: a seeded subset when the split holds more, all of them when it
    holds fewer."""
    _, frames, _ = make_video_data(
        config.data, image_size=config.image_size, seq_len=config.seq_len, fps=config.fps,
        stride=config.stride, resize=config.resize, split=config.split,
        test_fraction=config.test_fraction, test_sequences=num_sequences, seed=config.seed,
        cache_dir=config.cache_dir, device="cpu", progress=False,
    )  # fmt: skip
    return VideoSequences(frames)


def held_out_data(run_dir: Path, config: TrainConfig, opts: EvalOptions):
    """The held-out sequences (on CPU), their description for the report, and the options to
    measure with: ``samples`` capped, with a note, when a video test split holds fewer pairs."""
    num_sequences = max(4, math.ceil(opts.samples / (config.seq_len - 1)))
    if config.data is None:
        seed = config.seed if opts.held_out_seed is None else opts.held_out_seed
        scene, notes = "Moving MNIST from the test digits", []
        if config.scene == "discs":
            scene = f"moving discs ({config.disc_colours} colours, textured background)"
            notes = [
                "objects are discs: 'digit o' in the tables is disc o (disc 0 in front); a "
                "position is its bounding box's top-left corner"
            ]
        held_out = {
            "data": "moving discs" if config.scene == "discs" else "moving mnist",
            "source": f"{scene}, the test sequences of a run with seed {seed}",
            "seed": seed,
            "notes": notes,
        }
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
