import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_dvip import DVIP
from pyro_dvip.evaluation.bound import _traces, held_out_bound, prediction_saving, unit_kl
from pyro_dvip.evaluation.posterior import filter_sequences
from pyro_dvip.evaluation.prediction import frame_scores, prediction_scores, ssim
from pyro_dvip.objective import factor_terms


def tiny_model():
    return DVIP(2, 3, image_size=16, width=4, transition_layers=1).eval()


def test_bound_reports_per_frame_and_per_sequence_with_the_normalising_constant():
    frames = torch.rand(6, 3, 3, 16, 16)
    bound = held_out_bound(tiny_model(), frames, particles=4, iw_samples=8)
    assert bound["normalising_constant_included"] is True
    assert bound["log_norm_const_per_frame"] == pytest.approx(
        -0.5 * 3 * 16 * 16 * math.log(2 * math.pi * 0.25)
    )
    assert bound["elbo_per_sequence"] == pytest.approx(3 * bound["elbo_per_frame"])
    assert bound["elbo_per_frame_se"] > 0
    # The importance-weighted bound is at least the ELBO in expectation.
    assert bound["iw_bound_per_frame"] > bound["elbo_per_frame"] - 3 * bound["elbo_per_frame_se"]


def test_bound_splits_the_kl_by_factor_per_frame():
    dvip, frames = tiny_model(), torch.rand(5, 3, 3, 16, 16)
    pyro.set_rng_seed(3)
    bound = held_out_bound(dvip, frames, particles=2, iw_samples=1)
    pyro.set_rng_seed(3)  # the same two particles, by hand
    with torch.no_grad():
        kl = sum(factor_terms(*_traces(dvip, frames), analytic_kl=True)[1] for _ in range(2))
    expected = (kl.sum(0) / (2 * 5 * 3)).tolist()  # particles x sequences x frames
    assert len(bound["kl_per_factor_per_frame"]) == 2
    assert bound["kl_per_factor_per_frame"] == pytest.approx(expected, rel=1e-5)
    assert min(expected) > 0  # an untrained encoder's posterior is not its prior
    pyro.set_rng_seed(3)
    with torch.no_grad():
        steps = sum(
            factor_terms(*_traces(dvip, frames), analytic_kl=True, per_step=True)[1]
            for _ in range(2)
        )  # (B, T, K)
    assert steps.shape == (5, 3, 2)
    assert steps.sum(1) == pytest.approx(kl, rel=1e-6)
    by_step = bound["kl_per_step_per_factor"]
    assert torch.tensor(by_step) == pytest.approx(steps.sum(0) / (2 * 5), rel=1e-5)
    first, later = torch.tensor(by_step)[0], torch.tensor(by_step)[1:].mean(0)
    assert bound["prediction_saving"] == pytest.approx((1 - later / first).tolist(), rel=1e-5)


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


def test_active_units_count_the_units_that_cost_kl():
    dvip, frames = tiny_model(), torch.rand(5, 3, 3, 16, 16)
    pyro.set_rng_seed(3)
    bound = held_out_bound(dvip, frames, particles=2, iw_samples=1)
    per_unit = torch.tensor(bound["kl_per_unit_per_frame"])  # (K, d)
    assert per_unit.shape == (2, 3)
    assert per_unit.sum(-1).tolist() == pytest.approx(bound["kl_per_factor_per_frame"], rel=1e-4)
    assert bound["active_units"] == (per_unit > bound["active_nats"]).sum(-1).tolist()
    # a unit whose posterior is its prior at every step costs nothing and is not counted
    with torch.no_grad():
        traces = _traces(dvip, frames)
        kl = unit_kl(*traces)
    assert kl.shape == (5, 2, 3) and (kl >= 0).all()


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
