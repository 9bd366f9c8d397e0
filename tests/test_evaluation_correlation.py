import numpy as np

from pyro_dvip.evaluation.correlation import block_summary, lagged_correlation
from pyro_dvip.evaluation.mutual_info import contiguous_groups


def test_lagged_correlation_rows_are_z_next_and_columns_z_t():
    rng = np.random.default_rng(0)
    z_t = rng.standard_normal((5000, 3))
    z_next = np.stack([z_t[:, 1], rng.standard_normal(5000), -z_t[:, 0]], 1)
    corr = lagged_correlation(z_t, z_next)
    assert corr[0, 1] > 0.999 and corr[2, 0] < -0.999
    assert abs(corr[1]).max() < 0.05 and abs(corr[0, 0]) < 0.05
    np.testing.assert_allclose(corr, np.corrcoef(z_next.T, z_t.T)[:3, 3:], atol=1e-10)


def test_constant_units_get_zero_correlation_not_nan():
    rng = np.random.default_rng(1)
    z_t = np.concatenate([rng.standard_normal((100, 2)), np.ones((100, 1))], 1)
    corr = lagged_correlation(z_t, z_t)
    assert np.isfinite(corr).all() and (corr[:, 2] == 0).all()


def test_block_summary_of_self_predicting_factors():
    rng = np.random.default_rng(2)
    z_t = rng.standard_normal((5000, 4))
    z_next = 0.8 * z_t + 0.6 * rng.standard_normal((5000, 4))
    summary = block_summary(lagged_correlation(z_t, z_next), contiguous_groups(4, 2))
    # Same-factor blocks: half the entries 0.8, half ~0; cross blocks ~0.
    assert abs(summary["same_abs_corr"] - 0.4) < 0.03 and summary["cross_abs_corr"] < 0.03
