import math

import pyro.distributions as dist
import pytest
import torch
from conftest import make_known_answer, unit_kl_to_standard_normal

from pyro_dvip import DVIP
from pyro_dvip.evaluation.bound import held_out_bound, prediction_saving, unit_kl
from pyro_dvip.evaluation.posterior import filter_sequences
from pyro_dvip.evaluation.prediction import frame_scores, prediction_scores, ssim


def tiny_model():
    return DVIP(2, 3, image_size=16, width=4, transition_layers=1).eval()


def log_likelihood_of_half(frames, obs_var=0.25):
    """log N(x_t | 0.5, obs_var I) per sequence, summed over its frames: (N,)."""
    per_pixel = -((frames - 0.5) ** 2) / (2 * obs_var) - 0.5 * math.log(2 * math.pi * obs_var)
    return per_pixel.flatten(1).sum(-1)


def test_when_the_posterior_is_the_prior_both_bounds_are_the_exact_log_likelihood():
    # decoder mean 0.5 whatever z, q(z_t) = p(z_t) = N(0, I): log p(x) = log N(x | 0.5, 0.25 I)
    zeros = torch.zeros(2, 3)
    dvip = make_known_answer(tiny_model(), zeros, zeros)
    frames = torch.rand(6, 3, 3, 16, 16)
    bound = held_out_bound(dvip, frames, particles=3, iw_samples=4)
    log_px = log_likelihood_of_half(frames).mean().item()
    assert bound["normalising_constant_included"] is True
    assert bound["log_norm_const_per_frame"] == pytest.approx(
        -0.5 * 3 * 16 * 16 * math.log(2 * math.pi * 0.25)
    )
    assert bound["elbo_per_sequence"] == pytest.approx(log_px, rel=1e-6)
    assert bound["iw_bound_per_sequence"] == pytest.approx(log_px, rel=1e-6)
    assert bound["elbo_per_frame"] == pytest.approx(log_px / 3, rel=1e-6)
    assert bound["iw_bound_per_frame"] == pytest.approx(log_px / 3, rel=1e-6)
    assert bound["elbo_per_sequence_se"] == pytest.approx(0, abs=1e-3)  # no sample matters
    assert bound["kl_per_factor_per_frame"] == pytest.approx([0, 0], abs=1e-6)
    assert bound["active_units"] == [0, 0]  # a unit whose posterior is its prior is not counted


def test_kl_by_factor_step_and_unit_and_active_units_of_a_known_model():
    # factor 1's units: q = N(1, 1), N(0, 2), N(0.2, 1) against p = N(0, 1); factor 2: q = p
    q_loc = torch.tensor([[1.0, 0.0, 0.2], [0.0, 0.0, 0.0]])
    q_logvar = torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0]])
    unit = torch.tensor([[0.5, 0.5 * (1 - math.log(2.0)), 0.02], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(unit_kl_to_standard_normal(q_loc, q_logvar), unit)  # written out
    dvip = make_known_answer(tiny_model(), q_loc, q_logvar)
    frames = torch.rand(5, 3, 3, 16, 16)
    bound = held_out_bound(dvip, frames, particles=2, iw_samples=1)
    factor = unit.sum(-1)  # every step pays the same: this prior predicts nothing
    close = dict(rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(bound["kl_per_unit_per_frame"]), unit, **close)
    torch.testing.assert_close(torch.tensor(bound["kl_per_factor_per_frame"]), factor, **close)
    by_step = torch.tensor(bound["kl_per_step_per_factor"])  # (T, K)
    torch.testing.assert_close(by_step, factor.expand(3, 2), **close)
    assert bound["active_units"] == [2, 0]  # 0.5 and 0.153 nats are above 0.05; 0.02 is not
    saving = bound["prediction_saving"]
    assert saving[0] == pytest.approx(0.0, abs=1e-6) and math.isnan(saving[1])  # 2: collapsed
    expected = (log_likelihood_of_half(frames).mean() - 3 * factor.sum()).item()
    assert bound["elbo_per_sequence"] == pytest.approx(expected, rel=1e-6)


def test_prediction_saving_reads_the_kl_by_step():
    # factor 0: KL 8 then 2, 2 -> 75% saved; factor 1: nothing predicted; factor 2: collapsed
    step_kl = torch.tensor([[8.0, 4.0, 0.0], [2.0, 4.0, 0.0], [2.0, 4.0, 0.0]])
    saving = prediction_saving(step_kl)
    assert saving[:2].tolist() == pytest.approx([0.75, 0.0])
    assert saving[2].isnan()
    assert prediction_saving(step_kl[:1]).isnan().all()  # one frame: nothing to predict


def test_filtering_with_means_gives_samples_equal_to_means():
    posterior = filter_sequences(tiny_model(), torch.rand(2, 4, 3, 16, 16), use_mean=True)
    assert posterior.samples.shape == (2, 4, 2, 3)
    assert torch.equal(posterior.samples, posterior.means)
    sampled = filter_sequences(tiny_model(), torch.rand(2, 4, 3, 16, 16))
    assert not torch.equal(sampled.samples, sampled.means)


def test_active_units_are_absent_for_a_prior_without_a_per_unit_kl():
    class Trace:
        def __init__(self, fn):
            self.nodes = {"z_1": {"type": "sample", "is_observed": False, "fn": fn, "value": None}}

    q = dist.Normal(torch.zeros(4, 2, 3), 1.0)
    p = dist.StudentT(3.0, torch.zeros(4, 2, 3), 1.0)  # no registered KL(Normal || StudentT)
    assert unit_kl(Trace(p), Trace(q)) is None
    assert unit_kl(Trace(dist.Normal(0.5, torch.ones(4, 2, 3))), Trace(q)).shape == (4, 2, 3)


def test_ssim_is_one_for_identical_images_and_low_for_unrelated_ones():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 3, 16, 16, generator=g), torch.rand(4, 3, 16, 16, generator=g)
    assert torch.allclose(ssim(a, a), torch.ones(4))
    assert (ssim(a, b) < 0.1).all()


def test_frame_scores_per_step():
    truth = torch.zeros(2, 3, 1, 8, 8)
    predicted = truth.clone()
    predicted[:, 1] += 0.1  # step 2 off by 0.1 everywhere: MSE 0.01, PSNR 20 dB
    scores = frame_scores(predicted, truth)
    assert scores["mse"] == pytest.approx([0.0, 0.01, 0.0])
    assert scores["psnr"][1] == pytest.approx(20.0)


def test_copy_last_baseline_is_perfect_on_a_still_video():
    still = torch.rand(3, 1, 3, 16, 16).expand(3, 4, 3, 16, 16)
    scores = prediction_scores(tiny_model(), still, context=2, samples=2)
    assert scores["copy_last"]["mse"] == [0.0, 0.0]
    assert len(scores["model"]["psnr"]) == 2 and scores["model"]["mse"][0] > 0
    with pytest.raises(ValueError, match="context"):
        prediction_scores(tiny_model(), still, context=4)
