"""The appearance-swap check of a what/where model (``--decoder glimpse``): exchange two
factors' appearances a^j and a^k at the filtered posterior and see what each factor draws.

Each factor draws its own appearance at its own position, so the exchange must exchange what
the two draw. How much factor j's layer changes, relative to what it drew,

    change_jk = sum ||L_j(z_j, a_k) - L_j(z_j, a_j)||^2 / sum ||L_j(z_j, a_j)||^2

(summed over held-out frames and pixels; L_j what factor j shows), is 0 when the two
appearances draw the same thing (collapsed to one drawing, or identical objects) and about 2
when they draw different things that do not overlap once placed (what j drew leaves, what k
drew arrives).
"""

from __future__ import annotations

import numpy as np
import torch

from ..model import DVIP
from .alignment import not_applicable
from .posterior import FilteredLatents

NO_APPEARANCE = "not applicable: no appearance per factor"


@torch.no_grad()
def appearance_swap(dvip: DVIP, posterior: FilteredLatents, batch_size: int = 256) -> dict:
    """``{"change": (K, K) change_jk (diagonal 0), "mean_change", "min_change"}`` over the
    pairs of factors, from the posterior means of z and a."""
    decoder = dvip.decoder
    if not decoder.appearance_dim:
        return not_applicable("the decoder draws no appearance", NO_APPEARANCE)
    K = decoder.num_parts
    if K < 2:
        return not_applicable("one factor: no appearance to exchange", NO_APPEARANCE)
    N, T = posterior.means.shape[:2]
    z = posterior.flat("means").reshape(N * T, -1)
    a = posterior.appearance.reshape(N, K, -1).repeat_interleave(T, 0)  # (N T, K, A)
    moved = torch.zeros(K, K, dtype=torch.float64)
    drawn = torch.zeros(K, dtype=torch.float64)
    for start in range(0, N * T, batch_size):
        rows = slice(start, start + batch_size)
        before = decoder.parts(z[rows], a[rows])["layers"]  # (n, K, C, H, W)
        drawn += before.pow(2).flatten(2).sum((0, 2)).double().cpu()
        for k in range(K):  # every factor draws a^k at its own position
            swapped = a[rows, k : k + 1].expand_as(a[rows])
            after = decoder.parts(z[rows], swapped)["layers"]
            moved[:, k] += (after - before).pow(2).flatten(2).sum((0, 2)).double().cpu()
    change = (moved / drawn.clamp_min(1e-12)[:, None]).numpy()
    pairs = change[~np.eye(K, dtype=bool)]
    return {
        "change": change.tolist(),
        "mean_change": float(pairs.mean()),
        "min_change": float(pairs.min()),
    }
