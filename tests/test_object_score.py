"""The object score (compositional contrast) on decoders whose answer is known, and in
`dvip evaluate` beside each factor's layers and masks."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli
from PIL import Image

from pyro_dvip import make_config, train
from pyro_dvip.evaluation.generations import grid_size
from pyro_dvip.evaluation.object_score import block_jacobian_norms, contrast, object_score

P, d = 12, 3  # outputs, units per factor
HALVES = [np.arange(d), np.arange(d, 2 * d)]


def linear(weight):
    """decode(z) = z W^T: the Jacobian of every output is a row of W."""
    return lambda z: z @ weight.T


def test_a_decoder_whose_pixels_each_follow_one_factor_scores_zero():
    weight = torch.zeros(P, 2 * d)
    weight[: P // 2, :d] = torch.randn(P // 2, d)  # first half of the pixels: factor 0
    weight[P // 2 :, d:] = torch.randn(P // 2, d)  # second half: factor 1
    score = object_score(linear(weight), torch.randn(5, 2 * d), HALVES)
    assert score["compositional_contrast"] == 0 and score["normalised"] == 0


def test_every_pixel_moved_equally_by_both_factors_scores_the_maximum():
    w = torch.randn(P, d)
    weight = torch.cat([w, w], 1)  # J_n0 = J_n1 = ||w_n||
    score = object_score(linear(weight), torch.randn(5, 2 * d), HALVES)
    assert score["normalised"] == pytest.approx(1.0)
    # C_comp = sum_n J_n0 J_n1 = sum_n ||w_n||^2 at every z
    assert score["compositional_contrast"] == pytest.approx(w.square().sum().item(), rel=1e-5)


def test_contrast_arithmetic_on_given_norms_for_three_factors():
    norms = torch.tensor([[[1.0], [2.0], [0.0]]])  # one frame, K = 3, one output
    score = contrast(norms)
    assert score["compositional_contrast"] == pytest.approx(2.0)  # 1*2 + 1*0 + 2*0
    assert score["normalised"] == pytest.approx(2 / 9 * 3)  # 2K/(K-1) * 2 / (1+2+0)^2
    assert contrast(torch.ones(4, 1, 7))["normalised"] is None  # one factor: undefined


def test_scaling_the_decoder_scales_the_contrast_not_the_normalised_score():
    weight = torch.randn(P, 2 * d)
    z = torch.randn(5, 2 * d)
    one, two = (object_score(linear(c * weight), z, HALVES) for c in (1.0, 2.0))
    assert two["compositional_contrast"] == pytest.approx(4 * one["compositional_contrast"])
    assert two["normalised"] == pytest.approx(one["normalised"])


def test_block_norms_match_finite_differences_for_scattered_groups():
    torch.manual_seed(0)
    weight = torch.randn(P, 2 * d, dtype=torch.float64)
    decode = lambda z: torch.tanh(z @ weight.T) ** 2  # noqa: E731
    z = torch.randn(2, 2 * d, dtype=torch.float64)
    groups = [np.array([0, 2, 5]), np.array([1, 3, 4])]
    norms = block_jacobian_norms(decode, z, groups)
    eps = 1e-6
    for f in range(2):
        cols = []
        for i in range(2 * d):
            step = torch.zeros(2 * d, dtype=torch.float64)
            step[i] = eps
            cols.append((decode(z[f] + step) - decode(z[f] - step)) / (2 * eps))
        jac = torch.stack(cols, 1)  # (P, D)
        for k, g in enumerate(groups):
            assert torch.allclose(norms[f, k], jac[:, g].norm(dim=1), atol=1e-7)


def blobs(z, size=16):
    """Two Gaussian blobs at (z0, z1) and (z2, z3), in pixels: (N, size, size)."""
    grid = torch.arange(size, dtype=z.dtype)
    out = 0
    for o in range(2):
        x, y = z[:, 2 * o, None, None], z[:, 2 * o + 1, None, None]
        out = out + torch.exp(-((grid[None, :] - x) ** 2 + (grid[:, None] - y) ** 2) / 2)
    return out


def test_grouping_by_object_scores_lower_than_grouping_by_axis():
    z = torch.tensor([[3.0, 4.0, 12.0, 11.0], [4.0, 12.0, 11.0, 3.0]])  # blobs far apart
    objects = object_score(blobs, z, [np.array([0, 1]), np.array([2, 3])])["normalised"]
    axes = object_score(blobs, z, [np.array([0, 2]), np.array([1, 3])])["normalised"]
    assert objects < 0.01  # each pixel is moved by one blob's coordinates
    assert axes > 0.5  # each pixel of a blob is moved by its x (one group) and its y (other)


FAST = [
    "--samples", 40, "--particles", 2, "--iw-samples", 2, "--bootstrap", 0, "--partitions", 2,
    "--select-pairs", 20, "--intervention-pairs", 8, "--rollouts", 2, "--examples", 2,
    "--contrast-frames", 8, "--prediction-sequences", 4, "--bound-sequences", 4,
]  # fmt: skip


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int64)


def test_evaluate_writes_each_factors_layer_and_mask_and_the_object_score(tmp_path):
    run = tmp_path / "composite"
    train(make_config(**TINY, steps=2, decoder="composite"), run, progress=False)
    result = run_cli("evaluate", run, *FAST)
    assert result.exit_code == 0, result.output
    out = run / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    for model in ("trained", "untrained"):
        score = metrics[model]["object_score"]
        assert score["frames"] == 8 and score["groups"] == "factors"
        assert 0 <= score["normalised"] <= 1 and score["compositional_contrast"] > 0
        assert "Brady et al. 2023" in score["definition"]
    t, u = metrics["trained"]["object_score"], metrics["untrained"]["object_score"]
    assert f"{t['normalised']:.3f}   untrained {u['normalised']:.3f}" in result.output
    report = (out / "report.md").read_text()
    row = "| object score: normalised compositional contrast (0: one factor per pixel) | "
    assert f"{row}{t['normalised']:.2f} | {u['normalised']:.2f} |" in report
    assert "![trained](generations/trained/mask_factor1.png)" in report
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].split(",")[6] == "object_score"
    assert float(summary[1].split(",")[6]) == pytest.approx(t["normalised"])

    folder = out / "generations" / "trained"
    size = grid_size(2, TINY["seq_len"], TINY["image_size"])
    for stem in ("layer_factor0", "layer_factor1", "mask_factor0", "mask_factor1"):
        with Image.open(folder / f"{stem}.png") as image:
            assert image.size == size
        with Image.open(folder / f"{stem}.gif") as gif:
            assert gif.n_frames == TINY["seq_len"]
    # composite: the layers add up to the reconstruction, the masks to 1 (white padding: 2)
    layers = pixels(folder / "layer_factor0.png") + pixels(folder / "layer_factor1.png")
    reconstruction = pixels(folder / "reconstructions.png")
    frame = pixels(folder / "mask_factor0.png") + pixels(folder / "mask_factor1.png") < 400
    assert np.abs(layers - reconstruction)[frame].max() <= 2  # 8-bit rounding of each part
    masks = (pixels(folder / "mask_factor0.png") + pixels(folder / "mask_factor1.png"))[frame]
    assert np.abs(masks - 255).max() <= 1
    scale = size[0] // (TINY["seq_len"] * (TINY["image_size"] + 2) + 2)
    assert frame.sum() == 3 * 2 * TINY["seq_len"] * (TINY["image_size"] * scale) ** 2


def test_contrast_frames_below_one_is_an_option_error(tmp_path):
    result = run_cli("evaluate", tmp_path, "--contrast-frames", 0)
    assert result.exit_code == 2 and "Invalid value for '--contrast-frames'" in result.output


def test_an_entangled_prior_with_a_per_factor_decoder_is_measured_on_the_decoders_blocks():
    from pyro_dvip.build import build_model
    from pyro_dvip.evaluation.run import EvalOptions, _own_groups

    config = make_config(**TINY, entangled=True, decoder="additive")
    groups, protocol = _own_groups(build_model(config), config, EvalOptions())
    assert protocol == "the decoder's blocks"
    assert [g.tolist() for g in groups] == [[0, 1, 2], [3, 4, 5]]


def test_a_factor_that_moves_nothing_scores_zero_and_is_named_silent():
    # Factor 1 moves no output: C_comp is 0 by construction, whatever factor 0 draws, which is
    # what a per-factor decoder that dropped a digit scores; the share names the silent factor.
    norms = torch.zeros(3, 2, 5)
    norms[:, 0] = torch.rand(3, 5) + 0.1
    score = contrast(norms)
    assert score["normalised"] == 0.0 and score["compositional_contrast"] == 0.0
    assert score["factor_share"] == [1.0, 0.0] and score["silent_factors"] == [1]
    balanced = contrast(torch.ones(3, 2, 5) * torch.tensor([1.0, 3.0])[:, None])
    assert balanced["factor_share"] == [0.25, 0.75] and balanced["silent_factors"] == []
