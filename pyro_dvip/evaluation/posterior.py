"""Filtering posteriors of held-out sequences: the latents every measurement starts from.

``filter_sequences`` runs ``DVIP.guide`` over frames (N, T, C, H, W) in batches and returns,
per step, the posterior sample z_t ~ q(z_t | z_{t-1}, x_t) and the posterior mean
E[z_t | z_{t-1}, x_t] (both (N, T, K, d)). With ``use_mean=True`` the filter feeds the mean
forward instead of a sample (what the authors used for Figure 3), so samples equal means.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

from ..build import TEST_SEED_OFFSET
from ..config import TrainConfig
from ..data import MovingMNISTBatch, load_digits, make_test_set, make_video_data
from ..data.discs import disc_options, make_disc_test_set
from ..model import DVIP


class _FeedMeans(Messenger):
    """Replace every latent sample ``z_t`` by its distribution's mean."""

    def _pyro_sample(self, msg):
        if msg["name"].startswith("z_") and not msg["is_observed"] and msg["value"] is None:
            msg["value"] = msg["fn"].mean


@dataclass
class Posterior:
    """Posterior of N sequences: ``samples`` and ``means``, each (N, T, K, d)."""

    samples: torch.Tensor
    means: torch.Tensor

    def flat(self, which: str = "samples") -> torch.Tensor:
        """(N, T, K * d): the factors laid side by side, factor k in units [k d, (k+1) d)."""
        z = getattr(self, which)
        return z.flatten(2)


@torch.no_grad()
def filter_sequences(
    dvip: DVIP, frames: torch.Tensor, batch_size: int = 256, use_mean: bool = False
) -> Posterior:
    """Run the guide over ``frames`` (N, T, C, H, W) in eval mode; see the module docstring."""
    was_training = dvip.training
    dvip.eval()
    samples, means = [], []
    for start in range(0, len(frames), batch_size):
        x = frames[start : start + batch_size]
        guide = dvip.guide
        if use_mean:
            guide = _FeedMeans()(guide)
        trace = poutine.trace(guide).get_trace(x)
        sites = [f"z_{t}" for t in range(1, x.shape[1] + 1)]
        samples.append(torch.stack([trace.nodes[s]["value"] for s in sites], 1))
        means.append(torch.stack([trace.nodes[s]["fn"].mean for s in sites], 1))
    dvip.train(was_training)
    return Posterior(torch.cat(samples), torch.cat(means))


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


def consecutive_pairs(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_t, z_{t+1}) pairs from latents (N, T, D): two (N (T - 1), D) tensors."""
    return z[:, :-1].flatten(0, 1), z[:, 1:].flatten(0, 1)
