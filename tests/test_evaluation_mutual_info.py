import numpy as np
import pytest

from pyro_dvip.evaluation.mutual_info import (
    best_partition,
    contiguous_groups,
    factor_mi,
    ksg,
    random_partition,
)


def correlated_gaussians(n, dim, rho, rng):
    x = rng.standard_normal((n, dim))
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((n, dim))
    return x, y


@pytest.mark.parametrize("dim, rho", [(1, 0.9), (2, 0.8), (3, 0.5)])
def test_ksg_matches_the_gaussian_closed_form_in_low_dimension(dim, rho):
    x, y = correlated_gaussians(4000, dim, rho, np.random.default_rng(0))
    exact = -0.5 * dim * np.log2(1 - rho**2)  # bits
    estimate, local = ksg(x, y, k=3)
    assert abs(estimate - exact) < 0.08
    assert local.shape == (4000,) and np.isclose(local.mean(), estimate)


def test_ksg_of_independent_vectors_is_near_zero():
    rng = np.random.default_rng(1)
    estimate, _ = ksg(rng.standard_normal((3000, 3)), rng.standard_normal((3000, 3)))
    assert abs(estimate) < 0.05


def test_factor_mi_separates_self_prediction_from_cross_prediction():
    rng = np.random.default_rng(2)
    z_t = rng.standard_normal((3000, 4))
    z_next = 0.9 * z_t + np.sqrt(1 - 0.81) * rng.standard_normal((3000, 4))
    mi = factor_mi(z_t, z_next, contiguous_groups(4, 2), bootstrap=100)
    exact_same = -0.5 * 2 * np.log2(1 - 0.81)
    assert abs(mi["same"] - exact_same) < 0.15
    assert abs(mi["cross"]) < 0.05
    assert mi["same_interval"][0] <= mi["same"] <= mi["same_interval"][1]
    assert mi["pairs"] == 3000 and mi["groups"] == 2 and np.shape(mi["matrix"]) == (2, 2)


def test_group_size_that_does_not_divide_z_dim_is_an_error():
    with pytest.raises(ValueError, match="does not divide"):
        contiguous_groups(40, 15)


def test_random_partition_covers_every_unit_once():
    groups = random_partition(12, 4, np.random.default_rng(0))
    assert sorted(np.concatenate(groups).tolist()) == list(range(12))


def test_partition_protocol_finds_the_true_blocks_of_shuffled_latents():
    # Units 0 and 2 predict each other (and nothing else), so do units 1 and 3: a model with
    # two factors whose units are interleaved, as an entangled model could hold them.
    rng = np.random.default_rng(3)
    z_t = rng.standard_normal((2000, 4))
    z_next = 0.9 * z_t[:, [2, 3, 0, 1]] + np.sqrt(1 - 0.81) * rng.standard_normal((2000, 4))
    groups, scores = best_partition(z_t, z_next, group_size=2, partitions=20, select_pairs=1000)
    found = sorted(tuple(g.tolist()) for g in groups)
    assert found == [(0, 2), (1, 3)]
    assert len(scores) == 20 and max(scores) > 1.0 and min(scores) < 0.5
