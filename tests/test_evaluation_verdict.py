"""The verdict word, on probe results whose verdict docs/experiments.md established by reading
every probe by hand (circle seeds 1 and 5, box seed 2, the shared-generator additive try)."""

import json

import numpy as np
import pytest

from pyro_dvip.evaluation.alignment import (
    COORDINATES,
    Probe,
    alignment_summary,
    slot_alignment,
    slot_targets,
)
from pyro_dvip.evaluation.verdict import (
    alignment_verdict,
    unused_factors,
    used_alignment,
    verdict_record,
)


def _alignment(r2, whole, xy=None, protocol="factors"):
    """An alignment record as dvip evaluate writes it; ``xy`` (K, O, 2) the x, y probes."""
    r2 = np.array(r2)
    record = {"protocol": protocol, "r2": r2.tolist(), "whole_r2": whole, **alignment_summary(r2)}
    if xy is not None:
        coords = np.zeros(r2.shape + (len(COORDINATES),))
        coords[..., :2] = xy
        record["by_coordinate"] = {"coordinates": list(COORDINATES), "r2": coords.tolist()}
    return record


def test_aligned_seed_is_objects():
    # Circle seed 1: f0 digit 1 (0.99, 0.98), f1 digit 0 (0.94, 0.87).
    xy = [[[0.02, 0.05], [0.99, 0.98]], [[0.94, 0.87], [0.05, 0.06]]]
    v = alignment_verdict(_alignment([[0.05, 0.98], [0.90, 0.08]], [0.90, 0.98], xy))
    assert v["verdict"] == "objects"
    assert v["reason"] == "matched ≥ 0.90, leakage ≤ 0.08"


def test_clean_axis_split_names_the_split_digit():
    # Circle seed 5: f0 the x of both digits (0.78, 0.93), f1 their y (0.55, 0.49).
    xy = [[[0.78, 0.10], [0.93, 0.08]], [[0.05, 0.55], [0.04, 0.49]]]
    v = alignment_verdict(_alignment([[0.52, 0.58], [0.36, 0.26]], [0.85, 0.85], xy))
    assert v["verdict"] == "axis split"
    # digit 1's y (0.49) is under the 0.5 a factor must hold: only digit 0 is named
    assert v["reason"] == "digit 0: x in factor 0, y in factor 1"


def test_dropped_digit_wins_over_everything_else():
    # Box seed 2: digit 0 read by nothing (whole-latent R² -0.01).
    v = alignment_verdict(_alignment([[-0.01, 0.17], [-0.00, 0.79]], [-0.01, 0.83]))
    assert v["verdict"] == "dropped"
    assert "digit 0 (whole-latent R² -0.01)" in v["reason"]


def test_duplicated_digit_is_mixed():
    # The shared-generator additive decoder at 12,000 steps (box seed 4): digit 1 in both
    # factors, digit 0's x in both, its y in neither.
    xy = [[[0.90, 0.10], [0.95, 0.93]], [[0.92, 0.20], [0.94, 0.94]]]
    v = alignment_verdict(_alignment([[0.54, 0.94], [0.60, 0.94]], [0.90, 0.95], xy))
    assert v["verdict"] == "mixed"
    assert v["reason"] == "digit 0 in factors 0, 1; digit 1 in factors 0, 1"


def test_entangled_control_is_not_objects_and_says_it_is_of_a_split():
    # Circle entangled seed 5, best split: matched 0.91 / 0.82, but half 0 leaks 0.50 of digit 1
    # (gap 0.41, so a gap rule alone would have called it objects).
    protocol = "most favourable of 20 random partitions"
    v = alignment_verdict(_alignment([[0.91, 0.50], [0.26, 0.82]], [0.93, 0.86], None, protocol))
    assert v["verdict"] == "mixed"
    assert v["reason"] == "digit 1 in factors 0, 1 (best split)"


def test_video_has_no_verdict():
    v = alignment_verdict({"applicable": False, "note": "not applicable: no ground truth"})
    assert v == {"verdict": "n/a", "reason": "not applicable: no ground truth"}


def test_clean_but_weakly_read_digit_is_under_encoded_not_mixed():
    # Residual box seed 5: digit 1 alone in factor 1 but read at 0.64, and no better from the
    # whole latent (0.65); no leakage.
    xy = [[[0.99, 0.97], [-0.00, -0.01]], [[0.07, 0.00], [0.55, 0.73]]]
    v = alignment_verdict(_alignment([[0.98, -0.00], [0.04, 0.64]], [0.98, 0.65], xy))
    assert v["verdict"] == "under-encoded"
    assert v["reason"] == "digit 1 read at R² 0.64 from factor 1 only (whole latent 0.65)"


def test_weak_digit_that_the_whole_latent_reads_well_is_mixed():
    # The same probes, but the whole latent reads digit 1 at 0.95: the digit is spread over
    # the factors in a way no single factor reads, which is not a clean grouping.
    v = alignment_verdict(_alignment([[0.98, 0.20], [0.04, 0.64]], [0.98, 0.95]))
    assert v["verdict"] == "mixed"
    assert v["reason"] == "matched 0.64, gap 0.60"  # factor 1: 0.64 - 0.04


def test_weak_digit_with_leakage_is_mixed():
    # Paper decoder, circle seed 3 at 12,000 steps: digit 0 at 0.42, factor 1 leaks 0.36 of it.
    v = alignment_verdict(_alignment([[0.01, 0.42], [0.92, 0.36]], [0.92, 0.78]))
    assert v["verdict"] == "mixed"


def test_a_coupled_prior_with_a_per_factor_decoder_is_judged_on_the_decoders_blocks():
    # The coupled-prior ablation (box seed 1): one factor, probed on the decoder's two blocks;
    # the reason must say so, not "best split" (no random partition was searched).
    xy = [[[0.46, 0.05], [0.97, 0.95]], [[0.97, 0.96], [0.52, 0.04]]]
    alignment = _alignment([[0.27, 0.96], [0.96, 0.27]], [0.97, 0.97], xy, "the decoder's blocks")
    v = alignment_verdict(alignment)
    assert v == {
        "verdict": "objects",
        "reason": "matched ≥ 0.96, leakage ≤ 0.27 (the decoder's blocks)",
    }


def _four_factors(extra_row, kl=None):
    """Two digits, four factors: factors 0 and 1 hold one digit each, factor 3 nothing, factor
    2 ``extra_row``; ``kl`` the KL per factor per frame, or none (metrics from before it)."""
    alignment = _alignment([[0.95, 0.02], [0.03, 0.92], extra_row, [-0.01, 0.02]], [0.96, 0.94])
    if kl is not None:
        alignment["kl_per_factor_per_frame"] = kl
    return alignment


def test_two_object_factors_and_two_silent_ones_are_objects_with_two_unused():
    alignment = _four_factors([0.01, 0.00], kl=[4.5, 4.4, 0.001, 0.002])
    assert alignment["assignment"] == [[0, 0], [1, 1]]  # every digit matched, two factors left
    v = alignment_verdict(alignment)
    assert v == {  # only these two keys: examples/seed_grid.py writes them as CSV columns
        "verdict": "objects",
        "reason": "matched ≥ 0.92, leakage ≤ 0.03; unused: factors 2, 3 (KL < 0.1 nats per "
        "frame, left out of the matching)",
    }
    assert unused_factors(alignment) == [2, 3]


def test_an_extra_factor_with_large_kl_that_holds_part_of_a_digit_is_leakage_not_unused():
    alignment = _four_factors([0.45, 0.02], kl=[4.5, 4.4, 3.0, 0.002])
    assert alignment["max_leakage"] == 0.45  # the unmatched factor's share of digit 0
    v = alignment_verdict(alignment)
    assert v["verdict"] == "mixed"
    assert unused_factors(alignment) == [3]
    assert v["reason"] == (
        "matched 0.92, gap 0.89; unused: factor 3 (KL < 0.1 nats per frame, left out of the "
        "matching)"
    )


def test_a_cheap_factor_is_unused_whatever_its_mean_reads():
    # Factor 2 costs 0.05 nats per frame and its posterior mean reads R² 0.40 of digit 0: what
    # it passes to the decoder is the prior's noise, so that is no leakage.
    alignment = _four_factors([0.40, 0.02], kl=[4.5, 4.4, 0.05, 0.002])
    assert alignment["max_leakage"] == 0.40  # all factors' probes, as measured
    assert unused_factors(alignment) == [2, 3]
    assert alignment_verdict(alignment)["verdict"] == "objects"


def test_without_kl_per_factor_no_factor_is_unused():
    alignment = _four_factors([0.01, 0.00])  # metrics.json written before the KL reached it
    assert unused_factors(alignment) == []
    assert alignment_verdict(alignment) == {
        "verdict": "objects",
        "reason": "matched ≥ 0.92, leakage ≤ 0.03",
    }
    alignment = _four_factors([0.40, 0.02])  # without the KL, every factor's probes count
    assert alignment_verdict(alignment)["verdict"] == "mixed"


def test_a_collapsed_factor_matched_to_a_dropped_digit_is_dropped_and_unused():
    # Two factors, two digits: the cpu-objects-paper seed with KL [0.00, 5.89] dropped a digit.
    alignment = _alignment([[-0.01, 0.17], [-0.00, 0.79]], [-0.01, 0.83])
    alignment["kl_per_factor_per_frame"] = [0.0, 5.89]
    assert unused_factors(alignment) == [0]
    v = alignment_verdict(alignment)
    assert v["verdict"] == "dropped"
    assert v["reason"].startswith("not encoded: digit 0 (whole-latent R² -0.01); unused: factor 0")


def _seed_13(kl=None, leak=0.01):
    """cpu-objects --factors 8, box seed 13: factors 2 and 5 hold digit 0 (R² 0.82) and digit 1
    (0.95) at about 4.6 nats per frame; the six others cost 0.00 nats, and factor 6's posterior
    mean reads R² 0.42 of digit 1 (its mean moves far below its noise). ``leak``: what factor 2
    reads of digit 1."""
    r2 = [[0.02, 0.05], [0.01, 0.00], [0.82, leak], [0.03, 0.02],
          [0.00, 0.04], [0.05, 0.95], [0.10, 0.42], [0.02, 0.01]]  # fmt: skip
    alignment = _alignment(r2, [0.86, 0.97])
    alignment["kl_per_factor_per_frame"] = kl or [0.0, 0.0, 4.6, 0.0, 0.0, 4.7, 0.0, 0.0]
    return alignment


def test_eight_factors_with_six_silent_ones_are_objects_whatever_a_silent_mean_reads():
    alignment = _seed_13()
    assert alignment["max_leakage"] == 0.42  # read from factor 6's posterior mean
    assert unused_factors(alignment) == [0, 1, 3, 4, 6, 7]
    assert alignment_verdict(alignment) == {
        "verdict": "objects",
        "reason": "matched ≥ 0.82, leakage ≤ 0.05; unused: factors 0, 1, 3, 4, 6, 7 (KL < 0.1 "
        "nats per frame, left out of the matching)",
    }
    assert used_alignment(alignment)["assignment"] == [[2, 0], [5, 1]]


ONLY_UNUSED = "no used factor reads digit 1 (only unused factor 5 does, R² 0.95)"


def test_a_digit_held_only_by_an_unused_factor_is_dropped_and_the_reason_says_so():
    # Factor 5 holds digit 1 at R² 0.95 but costs 0.05 nats per frame: one used factor for two
    # digits, and digit 1 is read by no used factor.
    alignment = _seed_13(kl=[0.0, 0.0, 4.6, 0.0, 0.0, 0.05, 0.0, 0.0])
    assert alignment["assignment"] == [[2, 0], [5, 1]]  # all factors' matching: objects
    assert used_alignment(alignment)["without"] == [1]
    v = alignment_verdict(alignment)
    assert v["verdict"] == "dropped"
    assert v["reason"].startswith(ONLY_UNUSED)
    # a third used factor that reads nothing takes digit 1 in the matching, but not from factor 5
    alignment = _seed_13(kl=[0.0, 0.0, 4.6, 1.2, 0.0, 0.05, 0.0, 0.0])
    assert used_alignment(alignment)["assignment"] == [[2, 0], [3, 1]]
    v = alignment_verdict(alignment)
    assert v["verdict"] == "dropped"
    assert v["reason"].startswith(ONLY_UNUSED)


def test_fewer_used_factors_than_digits_are_never_objects():
    # Factor 2 reads both digits (0.82 and 0.85) and is the only used factor: it is matched to
    # digit 1, and digit 0 is left without a factor of its own (held, but by digit 1's).
    alignment = _seed_13(kl=[0.0, 0.0, 4.6, 0.0, 0.0, 0.05, 0.0, 0.0], leak=0.85)
    v = alignment_verdict(alignment)
    assert v["verdict"] == "mixed"
    assert v["reason"].startswith("digit 0 has no used factor of its own; matched 0.85, gap 0.03")


def test_a_used_factor_that_leaks_is_still_not_objects():
    # Factor 6 now costs 0.9 nats per frame: its R² 0.42 of digit 1 is leakage again.
    alignment = _seed_13(kl=[0.0, 0.0, 4.6, 0.0, 0.0, 4.7, 0.9, 0.0])
    assert unused_factors(alignment) == [0, 1, 3, 4, 7]
    v = alignment_verdict(alignment)
    assert v["verdict"] == "mixed"
    assert v["reason"].startswith("matched 0.82, gap 0.81; unused: factors 0, 1, 3, 4, 7")


def test_the_verdict_record_recounts_the_verdict_after_a_round_trip_through_json():
    features, positions = _crossing_slots()
    groups = [np.arange(1), np.arange(1, 2), np.arange(2, 4)]
    r2 = Probe(features, positions).matrix(groups)
    record = _alignment(r2.tolist(), Probe(features, positions).whole().tolist())
    record["by_target"] = {"position": {"r2": r2.tolist()}, "velocity": {"r2": r2.tolist()}}
    record["by_slot"] = slot_alignment(features, positions, groups)
    for kl in ([3.0, 3.0, 0.0], [3.0, 3.0, 3.0], None):
        if kl is not None:
            record["kl_per_factor_per_frame"] = kl
        kept = json.loads(json.dumps(verdict_record(record)))
        assert "velocity" not in kept["by_target"] and "assignment" not in kept
        assert alignment_verdict(kept) == alignment_verdict(record)


def test_a_kl_list_of_the_wrong_length_is_a_one_line_error():
    alignment = _four_factors([0.01, 0.00], kl=[4.5, 4.4, 0.0])
    with pytest.raises(ValueError, match="^alignment: kl_per_factor_per_frame has 3 values for 4"):
        alignment_verdict(alignment)


def _crossing_slots(seed=0, N=64, T=8):
    """Two digits moving in x at random speeds (so that they often cross) at random heights, and
    a posterior whose factor 0 holds the leftmost digit's (x, y) and factor 1 the rightmost's:
    (features (N, T, 4), positions (N, T, 2, 2))."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=float)
    x0, x1 = (rng.uniform(0, 21, (N, 1)) + rng.uniform(-3, 3, (N, 1)) * t for _ in range(2))
    y0, y1 = rng.uniform(0, 18, (N, 1)) + 0 * t, rng.uniform(0, 18, (N, 1)) + 0 * t
    positions = np.stack([np.stack([x0, y0], -1), np.stack([x1, y1], -1)], 2)  # (N, T, 2, 2)
    left = np.where((x0 <= x1)[..., None], positions[:, :, 0], positions[:, :, 1])
    right = np.where((x0 <= x1)[..., None], positions[:, :, 1], positions[:, :, 0])
    features = np.concatenate([left, right], -1) + 0.1 * rng.standard_normal((N, T, 4))
    return features, positions


def test_slot_targets_sort_the_digits_per_frame():
    positions = np.array([[[[5.0, 1.0], [2.0, 9.0], [7.0, 0.0]]]])  # (1, 1, 3, 2)
    assert slot_targets(positions, 0).tolist() == [[[[2.0, 9.0], [5.0, 1.0], [7.0, 0.0]]]]
    assert slot_targets(positions, 1).tolist() == [[[[7.0, 0.0], [5.0, 1.0], [2.0, 9.0]]]]


def test_factors_that_hold_the_leftmost_and_rightmost_digit_are_slots_not_under_encoded():
    features, positions = _crossing_slots()
    groups = [np.arange(2), np.arange(2, 4)]
    r2 = Probe(features, positions).matrix(groups)  # against the digits themselves
    record = _alignment(r2.tolist(), Probe(features, positions).whole().tolist())
    record["by_target"] = {"position": {"r2": r2.tolist()}}
    record["by_slot"] = slot_alignment(features, positions, groups)
    x_slots = record["by_slot"]["x"]
    assert x_slots["assignment"] == [[0, 0], [1, 1]]  # factor 0 the left slot, 1 the right
    assert x_slots["min_matched"] > 0.95 and x_slots["max_leakage"] < 0.5
    assert alignment_summary(r2)["min_matched"] < 0.6  # by digit each is read half the time
    v = alignment_verdict(record)
    assert v["verdict"] == "slots"
    assert v["reason"].startswith("the factors hold the digits ordered by x (factor 0: slot 0")


def test_factors_that_hold_one_digit_each_are_objects_whatever_the_slots_read():
    features, positions = _crossing_slots()
    features = np.concatenate([positions[:, :, 0], positions[:, :, 1]], -1)  # identity code
    groups = [np.arange(2), np.arange(2, 4)]
    r2 = Probe(features, positions).matrix(groups)
    record = _alignment(r2.tolist(), Probe(features, positions).whole().tolist())
    record["by_slot"] = slot_alignment(features, positions, groups)
    assert alignment_verdict(record)["verdict"] == "objects"
    assert record["by_slot"]["x"]["min_matched"] < 0.9  # slots of an identity code read worse


def test_weak_slots_leave_an_under_encoded_run_under_encoded():
    record = _alignment([[0.45, 0.05], [0.04, 0.95]], [0.5, 0.96])
    record["by_slot"] = {"x": {"r2": [[0.5, 0.4], [0.4, 0.5]], "assignment": [[0, 0], [1, 1]],
                               "min_matched": 0.5, "max_leakage": 0.4}}  # fmt: skip
    assert alignment_verdict(record)["verdict"] == "under-encoded"  # 0.5 - 0.45 < 0.3
