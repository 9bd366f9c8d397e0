"""Identity across crossings, on constructed trajectories whose swaps are known."""

import numpy as np
import pytest
from conftest import TINY

from pyro_dvip import make_config
from pyro_dvip.evaluation.identity import (
    crossings,
    followed_digits,
    identity_swaps,
    probe_positions,
)
from pyro_dvip.evaluation.mutual_info import contiguous_groups
from pyro_dvip.evaluation.run import EvalOptions, _identity

THRESHOLD = 7.0  # half the 14-pixel digit box of a 32x32 frame


def crossing_pair(T=9, apart=2.0):
    """One sequence (1, T, 2, 2): digit 0 moves right from x 0, digit 1 left from x 32, 4 px per
    step, at y 10 and 10 + ``apart``; with ``apart`` 2 their centres are 8.2 px apart at steps 3
    and 5 and 2 px at step 4, the only step closer than 7 px."""
    x = 4.0 * np.arange(T)
    digit0 = np.stack([x, np.full(T, 10.0)], -1)
    digit1 = np.stack([32.0 - x, np.full(T, 10.0 + apart)], -1)
    return np.stack([digit0, digit1], 1)[None]  # (1, T, O, 2)


def test_a_pair_that_crosses_once_and_swaps_identity_counts_one_swap():
    positions = crossing_pair()
    predicted = positions.copy()  # factor m predicts digit m's position ...
    predicted[:, 5:] = positions[:, 5:, ::-1]  # ... until the crossing, then the other digit's
    follows = followed_digits(predicted, positions)
    assert follows[0].tolist() == [[0, 1]] * 5 + [[1, 0]] * 4
    result = identity_swaps(follows, positions, THRESHOLD)
    assert crossings(positions, THRESHOLD) == [(0, 0, 1, 4, 4)]
    assert result["crossings"] == 1 and result["swaps"] == 1  # two factors exchanging: one swap
    assert result["swaps_per_crossing"] == 1.0
    assert result["consistent_share"] == 0.0


def test_the_same_crossing_without_a_swap_counts_none():
    positions = crossing_pair()
    follows = followed_digits(positions.copy(), positions)
    result = identity_swaps(follows, positions, THRESHOLD)
    assert result["crossings"] == 1 and result["swaps"] == 0
    assert result["swaps_per_crossing"] == 0.0 and result["consistent_share"] == 1.0


def test_digits_that_never_come_close_make_no_crossing_and_no_rate():
    positions = crossing_pair(apart=20.0)  # they pass 20 px apart
    follows = followed_digits(positions.copy(), positions)
    result = identity_swaps(follows, positions, THRESHOLD)
    assert crossings(positions, THRESHOLD) == []
    assert result["crossings"] == 0 and result["swaps"] == 0
    assert result["swaps_per_crossing"] is None  # no division by zero: n/a
    assert result["consistent_share"] == 1.0


def test_a_crossing_at_the_end_of_a_sequence_has_no_after_and_is_not_counted():
    positions = crossing_pair(T=5)  # the digits meet at the last step
    assert crossings(positions, THRESHOLD) == []


def test_the_probe_pipeline_finds_factors_that_exchange_their_digits_where_digits_cross():
    """Half of the sequences cross at step 4, the others pass 20 px apart. Factor k codes
    digit k's position (kept), or, in the crossing sequences, the other digit's after the
    crossing (swapped). The probes are fitted on codes alone, never told which."""
    rng = np.random.default_rng(0)
    N, T = 200, 9
    crossing = np.arange(N) % 2 == 1
    positions = np.concatenate([crossing_pair(T, apart=2.0 if c else 20.0) for c in crossing])
    positions = positions + rng.uniform(0, 4, (N, 1, 1, 2))  # both digits of a sequence shifted
    exchanged = positions.copy()
    exchanged[crossing, 5:] = positions[crossing, 5:, ::-1]
    mixing = rng.standard_normal((2, 2))
    groups = contiguous_groups(4, 2)

    def measured(code):  # code (N, T, O, 2): the position factor k holds
        features = (code @ mixing).reshape(N, T, 4) + 0.05 * rng.standard_normal((N, T, 4))
        predicted, scored = probe_positions(features, positions, groups, [[0, 0], [1, 1]])
        follows = followed_digits(predicted, positions[scored])
        return identity_swaps(follows, positions[scored], THRESHOLD), scored

    (kept, scored), (swapped, _) = measured(positions), measured(exchanged)
    assert kept["sequences"] == 100 and kept["crossings"] == crossing[scored].sum() > 0
    assert kept["swaps"] == 0 and kept["consistent_share"] == 1.0
    assert swapped["crossings"] == kept["crossings"]
    assert swapped["swaps_per_crossing"] == 1.0
    # the far-apart sequences keep their digits, every crossing one exchanges them
    assert swapped["consistent_share"] == pytest.approx(1 - crossing[scored].mean())


def test_factors_following_a_random_digit_each_frame_swap_at_three_crossings_in_four():
    """The untrained floor's chance level. Two factors, two digits: at every step each factor
    follows a digit drawn afresh, uniformly and independently. At a crossing of digits 0 and 1
    a factor changes digit between the step before and the step after with probability 1/2,
    so some factor changes, a swap, with probability 1 - (1/2)^2 = 3/4. Over n crossings the
    swapped share has standard deviation sqrt(3/4 * 1/4 / n); the tolerance is 5 of them."""
    rng = np.random.default_rng(0)
    N, T = 4000, 9
    crossing = np.arange(N) % 2 == 0  # half cross once (at step 4), half pass 20 px apart
    positions = np.concatenate([crossing_pair(T, apart=2.0 if c else 20.0) for c in crossing])
    chosen = rng.integers(0, 2, (N, T, 2))  # (n, T, M): the digit each factor follows
    predicted = np.take_along_axis(positions, chosen[..., None], axis=2)  # on that digit
    follows = followed_digits(predicted, positions)
    assert (follows == chosen).all()
    result = identity_swaps(follows, positions, THRESHOLD)
    n = int(crossing.sum())
    assert result["crossings"] == n == 2000
    assert result["swaps_per_crossing"] == pytest.approx(0.75, abs=5 * np.sqrt(0.75 * 0.25 / n))


def test_one_digit_per_sequence_has_no_identity_to_lose():
    metrics = {}
    config = make_config(**TINY, num_digits=1)
    _identity(config, None, None, None, EvalOptions(), metrics, {})  # nothing to read: n/a
    assert metrics["identity"] == {
        "applicable": False,
        "note": "not applicable: one digit per sequence (no crossing, no other digit to follow)",
    }
