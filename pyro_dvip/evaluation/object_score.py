"""A label-free object score: the compositional contrast of the decoder (Brady et al. 2023).

Brady, Zimmermann, Sharma, Schölkopf, von Kügelgen, Brendel, "Provably Learning
Object-Centric Representations" (ICML 2023) call a decoder compositional when every pixel
depends on at most one latent slot, and measure how far a decoder f is from that with the
compositional contrast at a latent z:

    J_{n,k}(z) = || d f_n(z) / d z^k ||_2        (pixel n, factor k's block of latents)
    C_comp(z)  = sum_n sum_{k<j} J_{n,k}(z) J_{n,j}(z)

which is 0 exactly when no pixel is moved by two factors. Here "pixel" n is one output value
(a colour channel of a pixel), as in their code, and the score is averaged over posterior
samples z of held-out frames.

C_comp scales with the square of the decoder's sensitivity, so a sharper decoder scores
higher for the same structure; runs are compared on a scale-free version instead:

    normalised = 2K/(K-1) * sum_{z,n} sum_{k<j} J_nk J_nj / sum_{z,n} (sum_k J_nk)^2

Since (sum_k J_nk)^2 = sum_k J_nk^2 + 2 sum_{k<j} J_nk J_nj, the ratio without the factor lies
in [0, (K-1)/(2K)], the maximum reached when every factor moves a pixel equally; the factor
maps it to [0, 1]: 0 = every pixel moved by one factor (objects, for a decoder), 1 = every
pixel moved equally by all. A ratio of sums weights pixels by how much they move, so the
background, which nothing moves, does not count. It is not invariant to rescaling one factor's
latents; the posterior's units sit on the prior's N(0, I) scale in every run.

A factor that moves nothing makes the score 0 whatever the others hold: a decoder that draws
both digits from one factor while the other has collapsed is "compositional" by this
definition. ``factor_share`` (each factor's part of sum_{z,n,k} J_nk) shows it; below
``SILENT_SHARE`` a factor is named in ``silent_factors``, and a score with a silent factor
says nothing about objects (docs/evaluation.md: measured on per-factor decoders that dropped a
digit, score 0.00-0.04).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import jacfwd, vmap

DEFINITION = (
    "compositional contrast of Brady et al. 2023 (ICML): J_nk = ||d mean_n / d z^k||_2 per "
    "output value n and factor k, from the decoder's Jacobian (forward mode) at posterior "
    "samples of held-out frames; compositional_contrast = mean over frames of "
    "sum_n sum_{k<j} J_nk J_nj (0: no pixel moved by two factors); normalised = 2K/(K-1) "
    "sum_{frames,n} sum_{k<j} J_nk J_nj / sum_{frames,n} (sum_k J_nk)^2 in [0, 1]: 0 = every "
    "pixel moved by one factor, 1 = every pixel moved equally by all; null for one group; "
    "factor_share = each factor's part of sum J_nk; silent_factors: share below 0.05 (a score "
    "with a silent factor is 0 by construction and says nothing about objects)"
)
SILENT_SHARE = 0.05  # a factor moving less than this part of the decoder's output is silent


def block_jacobian_norms(
    decode, z: torch.Tensor, groups: list[np.ndarray], batch_size: int = 16
) -> torch.Tensor:
    """J[f, k, n] = || d decode(z_f)_n / d z_f[groups[k]] ||_2 for latents z (F, D):
    (F, K, outputs). ``decode`` maps (N, D) -> (N, ...) and must treat frames independently
    (networks in eval mode)."""

    def one(v):  # (D,) -> (outputs,)
        return decode(v[None]).flatten()

    jacobian = vmap(jacfwd(one))  # forward mode: D tangents, D is small
    out = []
    for start in range(0, len(z), batch_size):
        jac = jacobian(z[start : start + batch_size])  # (f, outputs, D)
        out.append(
            torch.stack([jac[..., torch.as_tensor(g)].norm(dim=-1) for g in groups], 1)
        )  # (f, K, outputs)
    return torch.cat(out)


def contrast(norms: torch.Tensor) -> dict:
    """Brady et al.'s C_comp per frame (mean over frames) and the normalised score in [0, 1]
    from block Jacobian norms (F, K, outputs); see the module docstring. K = 1: undefined."""
    norms = norms.double()
    K = norms.shape[1]
    if K < 2:
        return {
            "definition": DEFINITION,
            "compositional_contrast": None,
            "normalised": None,
            "frames": len(norms),
        }
    mass = norms.sum((0, 2))  # (K,) each factor's sum of J_nk
    share = (mass / mass.sum()).tolist() if mass.sum() > 0 else [None] * K
    silent = [k for k, v in enumerate(share) if v is not None and v < SILENT_SHARE]
    total = norms.sum(1)  # (F, outputs)
    pairs = (total**2 - (norms**2).sum(1)) / 2  # sum_{k<j} J_k J_j per output
    per_frame = pairs.sum(-1)  # (F,) Brady's C_comp at each z
    denominator = (total**2).sum()
    normalised = (2 * K / (K - 1) * pairs.sum() / denominator).item() if denominator > 0 else None
    return {
        "definition": DEFINITION,
        "compositional_contrast": per_frame.mean().item(),
        "normalised": normalised,
        "factor_share": share,
        "silent_factors": silent,
        "frames": len(norms),
    }


@torch.no_grad()
def object_score(
    decoder: torch.nn.Module, z: torch.Tensor, groups: list[np.ndarray], batch_size: int = 16
) -> dict:
    """The compositional contrast of ``decoder`` (in eval mode) at latents z (F, D), grouped
    by ``groups`` (unit indices per factor). Forward-mode AD needs no autograd graph, so the
    parameters' graph is not built (``no_grad``)."""
    return contrast(block_jacobian_norms(decoder, z, groups, batch_size))
