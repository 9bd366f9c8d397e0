"""Heatmaps and curves for the report: the trained model always beside its untrained floor."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402


def heatmaps(
    panels: dict[str, np.ndarray],
    path: Path,
    *,
    boundaries: dict[str, list[int]] | None = None,
    vmin: float = -1.0,
    vmax: float = 1.0,
    xlabel: str = "",
    ylabel: str = "",
    annotate: bool = False,
    cmap: str = "RdBu_r",
) -> None:
    """One seaborn heatmap per panel (title -> matrix), side by side, sharing the colour scale;
    ``boundaries[title]`` draws lines before those row/column indices (factor boundaries)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.2), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], panels.items()):
        sns.heatmap(
            matrix, ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, square=True, annot=annotate,
            fmt=".2f", cbar=ax is axes[0, -1], xticklabels=annotate, yticklabels=annotate,
        )  # fmt: skip
        for b in (boundaries or {}).get(title, []):
            ax.axhline(b, color="black", lw=1.5)
            ax.axvline(b, color="black", lw=1.5)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def prediction_curves(scores: dict[str, dict], path: Path) -> None:
    """PSNR and SSIM per predicted step for each named set of scores."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, s in scores.items():
        steps = np.arange(1, len(s["psnr"]) + 1)
        axes[0].plot(steps, s["psnr"], marker="o", label=name)
        axes[1].plot(steps, s["ssim"], marker="o", label=name)
    for ax, label in zip(axes, ["PSNR (dB)", "SSIM"]):
        ax.set_xlabel("steps after the context")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
