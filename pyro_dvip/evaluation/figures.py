"""Heatmaps and curves for the report: the trained model always beside its untrained floor."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402


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


def identity_tracks(
    panels: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, digits: int
) -> None:
    """Which of ``digits`` digits each followed factor follows: one panel per model of
    (follows (n, T, M), close (n, T)), a row per sequence and factor, a column per step,
    coloured by digit; a dot marks the steps at which two digits are closer than the crossing
    threshold."""
    colours = ListedColormap(sns.color_palette("tab10", digits))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.2), squeeze=False)
    for ax, (title, (follows, close)) in zip(axes[0], panels.items()):
        n, T, M = follows.shape
        rows = follows.transpose(0, 2, 1).reshape(n * M, T)  # sequence by sequence, M rows each
        ax.imshow(rows, cmap=colours, vmin=-0.5, vmax=colours.N - 0.5, aspect="auto")
        marked = np.argwhere(np.repeat(close, M, axis=0))  # (row, step) of close steps
        ax.scatter(marked[:, 1], marked[:, 0], s=8, color="black", marker="o")
        for b in range(M, n * M, M):
            ax.axhline(b - 0.5, color="white", lw=2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(f"sequence × factor ({M} rows per sequence)")
        ax.set_yticks([])
    handles = [Patch(color=colours(o), label=f"follows digit {o}") for o in range(digits)]
    axes[0, -1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
