"""evaluation/prediction.py's SSIM against torchmetrics' on the same images.

torchmetrics (1.9) pads the images by reflection and averages its SSIM map over the whole
image, borders included; ours averages only the pixels whose window lies inside the image
(Wang et al.'s 'valid' filtering). Inside, both maps are the same formula: compared there.
torchmetrics derives its Gaussian window from sigma (11 × 11 at sigma 1.5), so the comparison
is made at 11 × 11 and our default 7 × 7 window is checked on its own.
"""

import numpy as np
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as reference

from pyro_dvip.evaluation.prediction import _gaussian_window, ssim


def images(seed: int, n: int = 6, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Random frames and a noisy, clipped copy of them: SSIM well inside (0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, size, size, generator=generator)
    b = (a + 0.2 * torch.randn(a.shape, generator=generator)).clamp(0, 1)
    return a, b


def test_ssim_equals_torchmetrics_inside_the_image():
    for seed, size in [(0, 32), (1, 16), (2, 64)]:
        a, b = images(seed, size=size)
        _, full = reference(a, b, data_range=1.0, sigma=1.5, return_full_image=True,
                            reduction="none")  # fmt: skip
        pad = 5  # (11 - 1) / 2
        inside = full[..., pad:-pad, pad:-pad]  # (n, C, H - 10, W - 10)
        expected = inside.mean((1, 2, 3))
        assert torch.allclose(ssim(a, b, size=11, sigma=1.5), expected, rtol=0, atol=1e-5)
        assert (expected > 0.2).all() and (expected < 0.95).all()


def test_identical_images_have_ssim_one_in_both():
    a, _ = images(3)
    assert torch.allclose(ssim(a, a), torch.ones(len(a)), atol=1e-6)
    assert torch.allclose(reference(a, a, data_range=1.0, reduction="none"), torch.ones(len(a)))


def test_the_default_window_is_a_normalised_7_by_7_gaussian_of_sigma_1_5():
    x = np.arange(-3, 4)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    expected = torch.tensor(g / g.sum(), dtype=torch.float32)[None, None]
    assert torch.allclose(_gaussian_window(), expected, rtol=0, atol=1e-7)


def test_torchmetrics_scalar_differs_from_ours_only_by_window_and_borders():
    # The figure docs/evaluation.md quotes: what a user comparing with torchmetrics' default sees.
    a, b = images(0)
    gap = (ssim(a, b) - reference(a, b, data_range=1.0, reduction="none")).abs().max()
    assert 0.001 < gap < 0.01
