"""Figure 2: correlation between every unit of z_{t+1} and every unit of z_t.

``lagged_correlation`` gives the Pearson matrix R[i, j] = corr(z_{t+1, i}, z_{t, j}) over
(z_t, z_{t+1}) pairs of posterior samples. A model whose factors predict themselves shows
blocks on the diagonal at the factor boundaries and little outside them; an entangled model
shows no block structure. ``block_summary`` condenses the picture into the mean |R| inside
same-factor blocks and inside cross-factor blocks.
"""

from __future__ import annotations

import numpy as np


def lagged_correlation(z_t: np.ndarray, z_next: np.ndarray) -> np.ndarray:
    """Pearson correlation (D, D), rows units of z_{t+1}, columns units of z_t; inputs (n, D).

    A unit with zero variance gets correlation 0 (it carries nothing) rather than NaN.
    """
    a = z_next - z_next.mean(0)
    b = z_t - z_t.mean(0)
    sa, sb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    cov = a.T @ b
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sa, sb)
    return np.nan_to_num(corr, nan=0.0)


def block_summary(corr: np.ndarray, groups: list[np.ndarray]) -> dict:
    """Mean |R| over same-group blocks and over cross-group blocks, for unit groups (K lists
    of unit indices). With a single group the cross value is NaN."""
    same, cross = [], []
    for i, gi in enumerate(groups):
        for j, gj in enumerate(groups):
            block = np.abs(corr[np.ix_(gi, gj)])
            (same if i == j else cross).append(block.mean())
    return {
        "same_abs_corr": float(np.mean(same)),
        "cross_abs_corr": float(np.mean(cross)) if cross else float("nan"),
    }
