"""Prediction: condition on the first frames, roll the prior forward, compare with the truth.

For each held-out sequence the filter reads frames 1..n (``context``) and gives a posterior
sample of z_n; the transition prior then samples z_{n+1}, ..., z_T, which the decoder maps to
predicted frames. With ``samples`` rollouts per sequence, the prediction scored is the mean of
the decoded rollouts (the mean of samples, which minimises expected squared error; a single
sample scores worse). Per predicted step h = 1..T-n: MSE per pixel, PSNR (peak 1, averaged
over frames) and SSIM (7x7 Gaussian window, sigma 1.5, per channel, averaged). The baseline
``copy_last`` repeats the last context frame: a model that predicts motion should beat it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro import poutine

from ..model import DVIP


def _gaussian_window(size: int = 7, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # (1, 1, size, size)


def ssim(
    a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, size: int = 7, sigma: float = 1.5
) -> torch.Tensor:
    """SSIM (Wang et al. 2004) of images (n, C, H, W) in [0, data_range]: one value per image,
    the mean over channels and over the pixels whose ``size × size`` Gaussian window lies inside
    the image (no padding). Tested against torchmetrics (docs/evaluation.md)."""
    n, C = a.shape[:2]
    window = _gaussian_window(size, sigma).to(a)
    a, b = a.reshape(n * C, 1, *a.shape[2:]), b.reshape(n * C, 1, *b.shape[2:])
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return s.mean((1, 2, 3)).view(n, C).mean(1)


def frame_scores(predicted: torch.Tensor, truth: torch.Tensor) -> dict:
    """MSE, PSNR and SSIM per step for (N, H_steps, C, H, W) predictions: lists of length H."""
    mse = (predicted - truth).pow(2).mean((2, 3, 4))  # (N, steps)
    psnr = -10 * mse.clamp_min(1e-10).log10()
    s = ssim(predicted.flatten(0, 1).clamp(0, 1), truth.flatten(0, 1)).view(mse.shape)
    return {
        "mse": mse.mean(0).tolist(),
        "psnr": psnr.mean(0).tolist(),
        "ssim": s.mean(0).tolist(),
    }


@torch.no_grad()
def rollout(dvip: DVIP, frames: torch.Tensor, context: int, samples: int) -> torch.Tensor:
    """Mean over ``samples`` prior rollouts of the decoded frames n+1..T: (N, T-n, C, H, W)."""
    N, T = frames.shape[:2]
    total = torch.zeros(N, T - context, *frames.shape[2:])
    for _ in range(samples):
        trace = poutine.trace(dvip.guide).get_trace(frames[:, :context])
        z = trace.nodes[f"z_{context}"]["value"]  # (N, K, d)
        a = trace.nodes["a"]["value"] if "a" in trace.nodes else None  # seen in the context
        for h in range(T - context):
            z = dvip.transition(z).sample()
            total[:, h] += dvip.render(z.reshape(N, dvip.z_dim), a).cpu()
    return total / samples


@torch.no_grad()
def prediction_scores(
    dvip: DVIP, frames: torch.Tensor, context: int, samples: int = 8, batch_size: int = 256
) -> dict:
    """Scores of the model's predictions and of ``copy_last``; see the module docstring."""
    T = frames.shape[1]
    if not 1 <= context < T:
        raise ValueError(f"context: must be between 1 and {T - 1} for {T}-frame sequences")
    was_training = dvip.training
    dvip.eval()
    predicted = torch.cat(
        [
            rollout(dvip, frames[s : s + batch_size], context, samples)
            for s in range(0, len(frames), batch_size)
        ]
    )
    dvip.train(was_training)
    truth = frames[:, context:].cpu()
    last = frames[:, context - 1 : context].cpu().expand_as(truth)
    return {
        "context": context,
        "samples": samples,
        "model": frame_scores(predicted, truth),
        "copy_last": frame_scores(last, truth),
    }
