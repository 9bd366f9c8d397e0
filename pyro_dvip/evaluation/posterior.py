"""Filtering posteriors of held-out sequences: the latents every measurement starts from.

``filter_sequences`` runs ``DVIP.guide`` over frames (N, T, C, H, W) in batches and returns,
per step, the posterior sample z_t ~ q(z_t | z_{t-1}, x_t) and the posterior mean
E[z_t | z_{t-1}, x_t] (both (N, T, K, d)). With ``use_mean=True`` the filter feeds the mean
forward instead of a sample (what the authors used for Figure 3), so samples equal means.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

from ..model import DVIP


class _FeedMeans(Messenger):
    """Replace every latent sample ``z_t`` by its distribution's mean."""

    def _pyro_sample(self, msg):
        if msg["name"].startswith("z_") and not msg["is_observed"] and msg["value"] is None:
            msg["value"] = msg["fn"].mean


@dataclass
class FilteredLatents:
    """The filtered latents of N sequences: ``samples`` and ``means``, each (N, T, K, d), and
    for a model with an appearance per factor the mean of q(a | x_{1:T}), (N, K, A), K the
    decoder's parts (else None).
    """

    samples: torch.Tensor
    means: torch.Tensor
    appearance: torch.Tensor | None = None

    def flat(self, which: str = "samples") -> torch.Tensor:
        """(N, T, K * d): the factors laid side by side, factor k in units [k d, (k+1) d)."""
        return getattr(self, which).flatten(2)


@torch.no_grad()
def filter_sequences(
    dvip: DVIP, frames: torch.Tensor, batch_size: int = 256, use_mean: bool = False
) -> FilteredLatents:
    """Run the guide over ``frames`` (N, T, C, H, W) in eval mode; see the module docstring."""
    was_training = dvip.training
    dvip.eval()
    samples, means, appearance = [], [], []
    for start in range(0, len(frames), batch_size):
        x = frames[start : start + batch_size]
        guide = dvip.guide
        if use_mean:
            guide = _FeedMeans()(guide)
        trace = poutine.trace(guide).get_trace(x)
        sites = [f"z_{t}" for t in range(1, x.shape[1] + 1)]
        samples.append(torch.stack([trace.nodes[s]["value"] for s in sites], 1))
        means.append(torch.stack([trace.nodes[s]["fn"].mean for s in sites], 1))
        if "a" in trace.nodes:  # per part of the decoder, also under an entangled prior
            mean = trace.nodes["a"]["fn"].mean
            appearance.append(mean.reshape(len(x), dvip.decoder.num_parts, -1))
    dvip.train(was_training)
    return FilteredLatents(torch.cat(samples), torch.cat(means),
                           torch.cat(appearance) if appearance else None)  # fmt: skip


def consecutive_pairs(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_t, z_{t+1}) pairs from latents (N, T, D): two (N (T - 1), D) tensors."""
    return z[:, :-1].flatten(0, 1), z[:, 1:].flatten(0, 1)
