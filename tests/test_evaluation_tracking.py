"""Tracking scores (py-motmetrics) on constructed tracks whose answers are known by hand, the
tracks a per-factor decoder draws, and the figures of an evaluated run beside its floor."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY

from pyro_dvip import make_config, train
from pyro_dvip.evaluation import evaluate
from pyro_dvip.evaluation.tracking import (
    PRESENT,
    centres_of_mass,
    decoder_tracks,
    drawn_weights,
    hypotheses,
    object_centres,
    tracking_scores,
)
from pyro_dvip.networks import FrameDecoder

THRESHOLD = 3.5  # pixels


def two_objects(T=4):
    """One sequence (1, T, 2, 2): object 0 moves right along y 5, object 1 left along y 20."""
    x = 2.0 * np.arange(T)
    return np.stack([np.stack([x, np.full(T, 5.0)], -1),
                     np.stack([30 - x, np.full(T, 20.0)], -1)], 1)[None]  # fmt: skip


def test_exact_tracks_score_mota_and_idf1_of_one_and_no_switch():
    centres = two_objects()
    tracks = centres + 0.5  # each factor half a pixel off its object
    result = tracking_scores(tracks, np.ones((1, 4, 2), bool), centres, THRESHOLD)
    assert result["mota"] == 1.0 and result["idf1"] == 1.0
    assert result["id_switches"] == 0 and result["id_switches_per_100"] == 0.0
    assert result["object_frames"] == 8 and result["hypothesis_frames"] == 8
    assert result["misses"] == 0 and result["false_positives"] == 0


def test_one_object_taken_over_by_another_factor_halfway_is_one_switch():
    """Factor 0 tracks object 0 throughout; object 1 is tracked by factor 1 at steps 0-1 and by
    factor 2 at steps 2-3, each drawing nothing at the other two steps. MOTA = 1 − 1/8; IDF1:
    object 0 with factor 0 (4 frames) and object 1 with factor 1 or 2 (2 frames), 2 × 6 /
    (8 object-frames + 8 hypothesis-frames)."""
    centres = two_objects()
    tracks = np.concatenate([centres, centres[:, :, 1:]], 2)  # (1, 4, 3, 2)
    present = np.ones((1, 4, 3), bool)
    present[0, 2:, 1] = present[0, :2, 2] = False
    result = tracking_scores(tracks, present, centres, THRESHOLD)
    assert result["id_switches"] == 1
    assert result["id_switches_per_100"] == pytest.approx(100 / 8)
    assert result["mota"] == pytest.approx(1 - 1 / 8)
    assert result["idf1"] == pytest.approx(2 * 6 / 16)


def test_two_factors_exchanging_their_objects_halfway_are_two_switches():
    """One per object: MOTA = 1 − 2/8; IDF1: each object keeps a factor for 2 of 4 frames,
    2 × 4 / (8 + 8)."""
    centres = two_objects()
    tracks = centres.copy()
    tracks[:, 2:] = centres[:, 2:, ::-1]
    result = tracking_scores(tracks, np.ones((1, 4, 2), bool), centres, THRESHOLD)
    assert result["id_switches"] == 2
    assert result["mota"] == pytest.approx(0.75) and result["idf1"] == pytest.approx(0.5)


def test_a_dropped_object_is_missed_at_every_frame():
    """Factor 1 draws nothing: object 1 is missed 4 times of 8, MOTA 1/2, IDF1 2 × 4 / (8 + 4)."""
    centres = two_objects()
    present = np.ones((1, 4, 2), bool)
    present[..., 1] = False
    result = tracking_scores(centres.copy(), present, centres, THRESHOLD)
    assert result["misses"] == 4 and result["false_positives"] == 0
    assert result["mota"] == pytest.approx(0.5) and result["idf1"] == pytest.approx(8 / 12)


def test_a_track_beyond_the_threshold_is_a_miss_and_a_false_positive():
    centres = two_objects()
    tracks = centres.copy()
    tracks[:, :, 1, 0] += THRESHOLD + 0.1  # factor 1 always just out of reach of object 1
    result = tracking_scores(tracks, np.ones((1, 4, 2), bool), centres, THRESHOLD)
    assert result["misses"] == 4 and result["false_positives"] == 4
    assert result["mota"] == pytest.approx(0.0)


def test_sequences_are_scored_on_their_own_whatever_their_chunking():
    """Factor ids and object ids are per sequence: 200 sequences (4 accumulators of 64) that
    each exchange their objects halfway are 400 switches, as one sequence gives 2."""
    centres = np.repeat(two_objects(), 200, 0)
    tracks = centres.copy()
    tracks[:, 2:] = centres[:, 2:, ::-1]
    result = tracking_scores(tracks, np.ones((200, 4, 2), bool), centres, THRESHOLD)
    assert result["id_switches"] == 400 and result["sequences"] == 200
    assert result["mota"] == pytest.approx(0.75) and result["idf1"] == pytest.approx(0.5)


def test_box_corners_become_box_centres():
    corners = np.array([[[[0.0, 3.0]]]])  # (1, 1, 1, 2)
    assert object_centres(corners, 7).tolist() == [[[[3.0, 6.0]]]]  # pixels 0..6 and 3..9


def blob_layers(N=1, K=2, C=3, size=16, at=(11, 4), level=0.01):
    """Layers (N, K, C, H, W): factor 0 draws a 3×3 blob centred on pixel (x, y) = ``at`` in
    the last channel over a faint uniform ``level``; factor 1 draws the level alone."""
    layers = torch.full((N, K, C, size, size), level)
    x, y = at
    layers[:, 0, -1, y - 1 : y + 2, x - 1 : x + 2] = 1.0
    return layers


def test_the_centre_of_mass_of_a_blob_is_its_pixel_and_a_factor_drawing_nothing_is_no_hypothesis():
    centres, masses = centres_of_mass(drawn_weights({"layers": blob_layers()}))
    assert centres[0, 0].tolist() == pytest.approx([11.0, 4.0])  # the level does not pull it
    assert masses[0, 1] == 0.0
    present = hypotheses(masses[:, None].numpy(), num_objects=1)  # (N, T, K)
    assert present.tolist() == [[[True, False]]]


def test_masks_are_preferred_to_layers():
    layers = blob_layers(at=(11, 4))
    masks = blob_layers(C=1, at=(3, 12))  # the mask claims another place than the colour
    centres, _ = centres_of_mass(drawn_weights({"layers": layers, "masks": masks}))
    assert centres[0, 0].tolist() == pytest.approx([3.0, 12.0])


def test_a_factor_under_the_share_of_one_objects_mass_is_no_hypothesis():
    one_object = 100.0  # two objects, all factors drawing 200 in all
    faint = (PRESENT - 0.01) * one_object
    masses = np.array([[[one_object, one_object - faint, faint]]])  # (N, T, K)
    assert hypotheses(masses, num_objects=2).tolist() == [[[True, True, False]]]


class AppearanceDecoder(FrameDecoder):
    """A stand-in for a decoder that reads each factor's appearance: factor k draws a blob at
    the pixel (x, y) given by its first two latent units, as bright as its first appearance
    unit."""

    z_dim, num_parts, appearance_dim = 4, 2, 1

    def forward(self, z, appearance):
        return self.parts(z, appearance)["layers"].sum(1)

    def parts(self, z, appearance):
        layers = torch.zeros(len(z), 2, 1, 16, 16)
        for i, (pose, look) in enumerate(zip(z.view(-1, 2, 2), appearance)):
            for k in range(2):
                x, y = pose[k].long().tolist()
                layers[i, k, 0, y, x] = look[k, 0]
        return {"layers": layers}


def test_a_decoder_reading_an_appearance_is_given_each_sequences_at_every_step():
    N, T = 3, 2
    pose = torch.tensor([[2.0, 3.0], [9.0, 12.0]])  # factor k at (x, y)
    means = pose.flatten().repeat(N, T, 1)  # (N, T, K d)
    means[:, 1] += 1.0  # one pixel right and down at the second step
    appearance = torch.tensor([[[1.0], [0.0]], [[1.0], [1.0]], [[0.0], [1.0]]])  # (N, K, A)
    centres, masses = decoder_tracks(AppearanceDecoder(), means, appearance, batch_size=2)
    assert centres.shape == (N, T, 2, 2)
    assert masses.tolist() == [[[1.0, 0.0]] * T, [[1.0, 1.0]] * T, [[0.0, 1.0]] * T]
    assert centres[1].tolist() == [[[2.0, 3.0], [9.0, 12.0]], [[3.0, 4.0], [10.0, 13.0]]]


FAST = dict(samples=40, particles=2, iw_samples=2, bootstrap=5, intervention_pairs=8,
            rollouts=2, examples=2)  # fmt: skip


@pytest.mark.parametrize("decoder", ["paper", "additive"])
def test_an_evaluated_run_has_tracking_scores_beside_its_floor(tmp_path, decoder):
    run = tmp_path / decoder
    train(make_config(**TINY, steps=2, decoder=decoder), run, progress=False)
    metrics = evaluate(run, **FAST)
    saved = json.loads((run / "eval" / "metrics.json").read_text())
    box = 7  # the digit box at 16x16
    for model in ("trained", "untrained"):
        t = saved[model]["tracking"]
        assert t["idf1"] == pytest.approx(metrics[model]["tracking"]["idf1"])
        assert t["threshold_pixels"] == box / 2
        assert -np.inf < t["mota"] <= 1 and 0 <= t["idf1"] <= 1
        assert 0 <= t["id_switches"] and t["id_switches_per_100"] == pytest.approx(
            100 * t["id_switches"] / t["object_frames"]
        )
        if decoder == "paper":  # the probes' scored half, every matched factor at every frame
            assert t["sequences"] == 10 and t["presence_share"] is None
            assert t["factors"] == [k for k, _ in saved[model]["alignment"]["assignment"]]
        else:
            assert t["sequences"] == 20 and t["presence_share"] == PRESENT
            assert t["factors"] == [0, 1]
        assert t["object_frames"] == t["sequences"] * TINY["seq_len"] * 2
    report = (run / "eval" / "report.md").read_text()
    t, u = (saved[m]["tracking"] for m in ("trained", "untrained"))
    assert f"| tracking: MOTA | {t['mota']:.2f} | {u['mota']:.2f} |" in report
    # what motion alone keeps reads the data, not the model: the same beside the floor
    assert t["motion_code"] == u["motion_code"]
    near, velocity = t["motion_code"]["nearest"], t["motion_code"]["velocity"]
    cell = (f"{near['idf1']:.2f} / {near['id_switches_per_100']:.2f}; "
            f"{velocity['idf1']:.2f} / {velocity['id_switches_per_100']:.2f}")  # fmt: skip
    assert f"| {cell} | {cell} |" in report
    summary = (run / "eval" / "summary.csv").read_text().splitlines()
    assert summary[0].endswith(",mota,idf1,id_switches_per_100")
    row = seed_grid().row_of("v", 0, run)  # examples/seed_grid.py's grid.csv row
    for key in ("mota", "idf1", "id_switches_per_100"):
        assert row[key] == round(t[key], 3) and row[f"{key}_untrained"] == round(u[key], 3)
        assert key in seed_grid().COLUMNS and f"{key}_untrained" in seed_grid().COLUMNS


def seed_grid():
    path = Path(__file__).resolve().parents[1] / "examples" / "seed_grid.py"
    spec = importlib.util.spec_from_file_location("seed_grid", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_objects_are_put_in_the_order_of_the_factors_that_track_them():
    from pyro_dvip.evaluation.tracking import object_order

    T = 4
    centres = np.zeros((3, T, 2, 2))
    centres[:, :, 0] = [2.0, 2.0]  # object 0 top left, object 1 bottom right, all sequences
    centres[:, :, 1] = [20.0, 20.0]
    tracks = np.zeros((3, T, 3, 2))
    tracks[0, :, 0], tracks[0, :, 1], tracks[0, :, 2] = [2, 3], [19, 20], [30, 30]
    tracks[1, :, 0], tracks[1, :, 1], tracks[1, :, 2] = [21, 20], [2, 2], [30, 30]
    tracks[2, :, 0], tracks[2, :, 1], tracks[2, :, 2] = [30, 30], [21, 20], [2, 2]
    present = np.ones((3, T, 3), dtype=bool)
    present[2, :, 0] = False  # in sequence 2 factor 0 draws nothing: factors 1 and 2 track
    order = object_order(tracks, present, centres)
    # sequence 0: factor 0 has object 0; sequence 1: factor 0 has object 1; sequence 2:
    # factor 1 has object 1, factor 2 object 0
    assert order.tolist() == [[0, 1], [1, 0], [1, 0]]


def test_a_perfect_slot_code_switches_once_per_object_at_a_crossing():
    from pyro_dvip.evaluation.tracking import slot_code_scores

    # two objects crossing in x at frame 2 of 4 (y far apart so they never overlap)
    centres = np.zeros((1, 4, 2, 2))
    centres[0, :, 0] = [[0, 0], [5, 0], [15, 0], [20, 0]]
    centres[0, :, 1] = [[20, 30], [15, 30], [5, 30], [0, 30]]
    scores = slot_code_scores(centres, threshold=3.0)
    # the left slot follows object 0 then object 1: each object changes track once
    assert scores["x"]["id_switches_per_100"] == pytest.approx(100 * 2 / 8)
    assert scores["x"]["idf1"] == pytest.approx(0.5)
    # sorted by y the slots never change object: a perfect tracker
    assert scores["y"]["idf1"] == pytest.approx(1.0)
    assert scores["y"]["id_switches_per_100"] == 0


def test_motion_alone_keeps_identity_through_a_crossing_with_velocity_not_with_position():
    from pyro_dvip.evaluation.tracking import motion_code_scores

    # two objects on an X: object 0 climbs (4, 4) a frame, object 1 falls (4, -4); at frame 2
    # they are 2 px apart, and at frame 3 each is nearer where the *other* went (4.5 px) than
    # where it went itself (5.7 px): the nearest position hands them over, a constant
    # velocity does not
    t = np.arange(6)
    centres = np.zeros((1, 6, 2, 2))
    centres[0, :, 0] = np.stack([4 * t, 4 * t - 1], 1)
    centres[0, :, 1] = np.stack([4 * t, 17 - 4 * t], 1)
    near = np.linalg.norm(centres[0, 3, 1] - centres[0, 2, 0])
    own = np.linalg.norm(centres[0, 3, 0] - centres[0, 2, 0])
    assert near < own  # the construction: the handover is the nearest choice
    scores = motion_code_scores(centres, threshold=1.0)
    # one handover at frame 3: each object changes track once, 2 switches in 12 object-frames
    assert scores["nearest"]["id_switches_per_100"] == pytest.approx(100 * 2 / 12)
    # each track is on its object for 3 of 6 frames (IDF1 = 2 * 6 / (12 + 12))
    assert scores["nearest"]["idf1"] == pytest.approx(0.5)
    assert scores["velocity"]["id_switches_per_100"] == 0
    assert scores["velocity"]["idf1"] == pytest.approx(1.0)


def test_motion_alone_at_the_second_frame_takes_the_nearest_position():
    from pyro_dvip.evaluation.tracking import motion_code_scores

    # two objects pass each other 10 px a frame, 1 px apart: at the second frame each is
    # 1 px from where the other was (10 px from its own start), and one frame shows no
    # velocity, so both references hand them over there and keep the swap after
    centres = np.zeros((1, 3, 2, 2))
    centres[0, :, 0] = [[0, 0], [10, 0], [20, 0]]
    centres[0, :, 1] = [[10, 1], [0, 1], [-10, 1]]
    scores = motion_code_scores(centres, threshold=1.0)
    for name in ("nearest", "velocity"):
        assert scores[name]["id_switches_per_100"] == pytest.approx(100 * 2 / 6), name
