import numpy as np
import pytest
import torch

from pyro_dvip.evaluation.alignment import (
    Probe,
    alignment_summary,
    best_probe_partition,
    intervention,
    intervention_summary,
)
from pyro_dvip.evaluation.mutual_info import contiguous_groups

N, T, F = 300, 4, 4  # sequences, steps, targets per digit


def digits_truth(rng):
    return rng.standard_normal((N, T, 2, F))  # (N, T, O, F): two digits


def encode(truth_parts, rng, noise=0.1):
    """A factor holding a random rotation of the given digits' targets, plus noise."""
    stacked = np.concatenate(truth_parts, -1)  # (N, T, F * parts)
    weights, _ = np.linalg.qr(rng.standard_normal((stacked.shape[-1], stacked.shape[-1])))
    return stacked @ weights + noise * rng.standard_normal(stacked.shape)


def test_a_factor_that_encodes_one_digit_scores_high_on_it_and_low_on_the_other():
    rng = np.random.default_rng(0)
    truth = digits_truth(rng)
    z = np.concatenate([encode([truth[:, :, 0]], rng), encode([truth[:, :, 1]], rng)], -1)
    r2 = Probe(z, truth).matrix(contiguous_groups(8, 4))
    assert r2[0, 0] > 0.95 and r2[1, 1] > 0.95
    assert r2[0, 1] < 0.05 and r2[1, 0] < 0.05
    summary = alignment_summary(r2)
    assert summary["assignment"] == [[0, 0], [1, 1]]
    assert summary["max_leakage"] < 0.05 and summary["mean_gap"] > 0.9
    assert summary["disentanglement"] > 0.9 and summary["completeness"] > 0.9


def test_mixed_factors_show_high_leakage():
    rng = np.random.default_rng(1)
    truth = digits_truth(rng)
    both = [truth[:, :, 0], truth[:, :, 1]]
    z = np.concatenate([encode(both, rng), encode(both, rng)], -1)  # each factor holds both
    summary = alignment_summary(Probe(z, truth).matrix(contiguous_groups(16, 8)))
    assert summary["min_matched"] > 0.9
    assert min(summary["leakage"]) > 0.9 and summary["mean_gap"] < 0.1
    assert summary["disentanglement"] < 0.1 and summary["completeness"] < 0.1


def test_a_dropped_object_has_low_r2_even_from_the_whole_latent():
    rng = np.random.default_rng(2)
    truth = digits_truth(rng)
    z = np.concatenate([encode([truth[:, :, 0]], rng), rng.standard_normal((N, T, 4))], -1)
    probe = Probe(z, truth)
    whole = probe.whole()
    assert whole[0] > 0.95 and abs(whole[1]) < 0.05
    summary = alignment_summary(probe.matrix(contiguous_groups(8, 4)))
    assert summary["min_matched"] < 0.05 and summary["min_gap"] < 0.05


def test_the_smallest_gap_shows_a_dropped_digit_that_the_mean_gap_hides():
    # The recipe's seed 2 (docs/results.md): digit 0 encoded by no factor.
    summary = alignment_summary(np.array([[-0.01, 0.17], [-0.00, 0.79]]))
    assert summary["mean_gap"] == pytest.approx(0.305)
    assert summary["min_gap"] == pytest.approx(-0.18)


def test_probes_are_scored_on_sequences_they_were_not_fitted_on():
    rng = np.random.default_rng(3)
    truth = digits_truth(rng)
    z = rng.standard_normal((N, T, 40))  # pure noise, many units: in-sample R^2 would be > 0
    r2 = Probe(z, truth).whole()
    assert (r2 < 0.02).all()


def test_alignment_summary_reads_a_published_style_matrix():
    summary = alignment_summary(np.array([[0.51, 0.74], [0.82, 0.49]]))
    assert summary["assignment"] == [[0, 1], [1, 0]]
    assert summary["matched"] == [0.74, 0.82] and summary["leakage"] == [0.51, 0.49]
    assert summary["max_leakage"] == 0.51
    assert summary["mean_gap"] == pytest.approx(0.28)


def test_entangled_latents_are_probed_on_their_most_favourable_split():
    rng = np.random.default_rng(4)
    truth = rng.standard_normal((N, T, 2, 2))
    z = np.zeros((N, T, 4))
    z[..., [0, 2]] = truth[:, :, 0] + 0.05 * rng.standard_normal((N, T, 2))  # digit 0
    z[..., [1, 3]] = truth[:, :, 1] + 0.05 * rng.standard_normal((N, T, 2))  # digit 1
    groups, r2, scores = best_probe_partition(Probe(z, truth), 4, 2, partitions=20)
    assert sorted(tuple(g.tolist()) for g in groups) == [(0, 2), (1, 3)]
    assert alignment_summary(r2)["mean_gap"] > 0.9 and len(scores) == 20


def channel_decoder(mixed: bool):
    """Hand-built decoder of z (n, 4) to (n, 3, 8, 8): units 0-1 draw a pattern in red, units
    2-3 in green; with ``mixed`` the red channel also depends on units 2-3."""
    patterns = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0))

    def decode(z):
        red = torch.einsum("nu,uhw->nhw", z[:, :2], patterns[:2])
        green = torch.einsum("nu,uhw->nhw", z[:, 2:], patterns[2:])
        if mixed:
            red = red + green
        return torch.stack([red, green, torch.zeros_like(red)], 1)

    return decode


def test_intervention_puts_each_factor_change_into_its_digit_channel():
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    result = intervention(channel_decoder(mixed=False), z, contiguous_groups(4, 2), pairs=32)
    fractions = np.array(result["fractions"])
    np.testing.assert_allclose(fractions, [[1, 0, 0], [0, 1, 0]], atol=1e-6)
    assert intervention_summary(fractions, 2)["min_matched_share"] == pytest.approx(1.0)
    assert min(result["change"]) > 0


def test_intervention_shows_a_factor_whose_change_spreads_over_two_channels():
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    result = intervention(channel_decoder(mixed=True), z, contiguous_groups(4, 2), pairs=32)
    fractions = np.array(result["fractions"])
    np.testing.assert_allclose(fractions[0], [1, 0, 0], atol=1e-6)
    assert 0.3 < fractions[1, 0] < 0.7 and 0.3 < fractions[1, 1] < 0.7


def test_a_probe_on_position_alone_scores_what_velocity_noise_would_hide():
    from pyro_dvip.evaluation.alignment import Probe

    rng = np.random.default_rng(0)
    positions = rng.normal(size=(200, 4, 1, 2))  # (N, T, O, 2): encoded in the features
    velocities = rng.normal(size=(200, 4, 1, 2))  # not encoded at all
    features = np.concatenate([positions[:, :, 0], rng.normal(size=(200, 4, 2))], -1)
    targets = np.concatenate([positions, velocities], -1)  # (N, T, O, 4)
    groups = [np.arange(4)]
    both = Probe(features, targets, seed=0).matrix(groups)[0, 0]
    position = Probe(features, targets[..., :2], seed=0).matrix(groups)[0, 0]
    velocity = Probe(features, targets[..., 2:], seed=0).matrix(groups)[0, 0]
    assert position > 0.95 and velocity < 0.05
    assert both == pytest.approx((position + velocity) / 2, abs=1e-6)  # the mean over targets


def test_an_axis_split_looks_mixed_by_position_and_shows_by_coordinate():
    from pyro_dvip.evaluation.alignment import coordinate_r2

    rng = np.random.default_rng(0)
    truth = digits_truth(rng)  # (N, T, O=2, 4): x, y, vx, vy per digit
    x_of_both = encode([truth[:, :, 0, :1], truth[:, :, 1, :1]], rng)  # factor 0: every x
    y_of_both = encode([truth[:, :, 0, 1:2], truth[:, :, 1, 1:2]], rng)  # factor 1: every y
    features = np.concatenate([x_of_both, y_of_both], -1)
    groups = contiguous_groups(4, 2)
    position = Probe(features, truth[..., :2], seed=0).matrix(groups)
    assert np.all((position > 0.4) & (position < 0.6))  # mixed by position: ~0.5 everywhere
    assert alignment_summary(position)["min_gap"] < 0.1
    r2, whole = coordinate_r2(features, truth, groups, seed=0)
    assert r2.shape == (2, 2, 4) and whole.shape == (2, 4)
    assert np.all(r2[0, :, 0] > 0.95) and np.all(r2[0, :, 1] < 0.05)  # factor 0: x of both
    assert np.all(r2[1, :, 1] > 0.95) and np.all(r2[1, :, 0] < 0.05)  # factor 1: y of both
    assert np.all(whole[:, :2] > 0.95) and np.all(whole[:, 2:] < 0.05)  # velocities not held


def test_an_mlp_probe_reads_a_non_linear_code_that_a_ridge_probe_calls_dropped():
    rng = np.random.default_rng(0)
    u = rng.uniform(-1, 1, (N, T, 2))  # u[..., o]: the code of digit o
    truth = np.stack([u**2, np.cos(3 * u)], -1)  # (N, T, O, 2): even functions of the code
    z = u + 0.01 * rng.standard_normal(u.shape)
    groups = contiguous_groups(2, 1)  # factor k holds u_k, the code of digit k
    ridge = Probe(z, truth).matrix(groups)
    mlp = Probe(z, truth, model="mlp").matrix(groups)
    assert ridge.max() < 0.1  # even functions: no linear trace of either digit
    assert mlp[0, 0] > 0.8 and mlp[1, 1] > 0.8
    assert mlp[0, 1] < 0.1 and mlp[1, 0] < 0.1
    assert alignment_summary(mlp)["assignment"] == [[0, 0], [1, 1]]


def test_an_unknown_probe_model_is_named_in_the_error():
    truth = digits_truth(np.random.default_rng(0))
    with pytest.raises(ValueError, match="probe: unknown 'forest'; choose from ridge, mlp"):
        Probe(truth[:, :, 0], truth, model="forest")


def test_with_more_factors_than_digits_every_digit_is_matched_and_the_rest_still_leak():
    r2 = np.array([[0.01, 0.00], [0.02, 0.93], [0.95, 0.03], [0.00, 0.40]])  # (K=4, O=2)
    summary = alignment_summary(r2)
    assert summary["assignment"] == [[1, 1], [2, 0]]  # the best factor of each digit
    assert summary["matched"] == [0.93, 0.95] and summary["leakage"] == [0.02, 0.03]
    assert summary["max_leakage"] == 0.40  # factor 3 is matched to nothing, yet holds digit 1
