"""The disc scene (beyond the paper): occluding discs over the example video's background, with
the positions and masks the probes and identity read, and `dvip train/evaluate --scene discs`."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli, tiny_args

from pyro_dvip import make_config, train
from pyro_dvip.checkpoint import list_checkpoints, load_checkpoint
from pyro_dvip.data import MovingDiscs, make_disc_test_set
from pyro_dvip.data.discs import background, disc_box
from pyro_dvip.evaluation.alignment import SHARED_CHANNEL

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The scene's colours (RGB 0..255): orange and blue as in examples/video, then green
ORANGE, BLUE, GREEN = (240, 140, 30), (40, 90, 230), (60, 190, 90)


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def rgb(colour):
    return torch.tensor(colour, dtype=torch.float32) / 255


def test_a_disc_box_is_16_pixels_at_64_and_scales_with_the_frame():
    assert [disc_box(s) for s in (16, 32, 64, 128)] == [4, 8, 16, 32]


def test_two_placed_discs_draw_their_colours_the_front_one_over_the_overlap():
    discs = MovingDiscs(image_size=32, num_discs=2, seq_len=1)  # 8-pixel discs, radius 4
    # disc 0's box at (4, 4): centre (8, 8); disc 1's at (8, 4): centre (12, 8), 4 px right
    positions = torch.tensor([[[[4.0, 4.0], [8.0, 4.0]]]])  # (B, T, N, 2)
    frames, masks = discs.render(positions)
    orange, blue = rgb(ORANGE), rgb(BLUE)
    bg = torch.from_numpy(background(32) / 255).float()  # (H, W, 3)
    pixel = frames[0, 0].permute(1, 2, 0)  # (H, W, 3); pixel (row, col) centred at +0.5
    torch.testing.assert_close(pixel[7, 5], orange)  # inside disc 0 only
    torch.testing.assert_close(pixel[7, 14], blue)  # inside disc 1 only
    torch.testing.assert_close(pixel[7, 10], orange)  # in both: disc 0 is in front
    torch.testing.assert_close(pixel[25, 25], bg[25, 25])  # far from both: the background
    assert masks[0, 0, 0, 7, 10] == 1 and masks[0, 0, 1, 7, 10] == 0  # disc 1 hidden there
    assert masks[0, 0, 1, 7, 14] == 1 and masks[0, 0, :, 25, 25].sum() == 0


def test_frames_are_the_background_and_colours_weighted_by_the_visible_masks():
    batch = MovingDiscs(image_size=32, num_discs=3, seq_len=6, speed=14.0, seed=3).sample(8)
    seen = batch.masks.sum(2, keepdim=True)  # (B, T, 1, H, W)
    assert batch.masks.min() >= 0 and seen.max() <= 1 + 1e-6
    bg = torch.from_numpy(background(32) / 255).float().permute(2, 0, 1)  # (3, H, W)
    colours = torch.stack([rgb(c) for c in (ORANGE, BLUE, GREEN)])  # (N, 3)
    drawn = torch.einsum("btnhw,nc->btchw", batch.masks, colours) + bg * (1 - seen)
    torch.testing.assert_close(batch.frames, drawn)


def test_a_lone_disc_is_centred_where_its_position_says():
    batch = MovingDiscs(image_size=64, num_discs=1, seq_len=5, speed=7.0, seed=1).sample(4)
    mask = batch.masks[:, :, 0]  # (B, T, H, W)
    centre = torch.arange(64, dtype=torch.float32) + 0.5
    cx = (mask * centre).sum((-2, -1)) / mask.sum((-2, -1))
    cy = (mask * centre[:, None]).sum((-2, -1)) / mask.sum((-2, -1))
    expected = batch.positions[:, :, 0] + disc_box(64) / 2  # the box's corner plus the radius
    torch.testing.assert_close(torch.stack([cx, cy], -1), expected, atol=0.05, rtol=0)
    full = np.pi * (disc_box(64) / 2) ** 2
    assert abs(mask[0, 0].sum().item() - full) < 1.5  # a whole disc, in the frame


def test_boxes_stay_in_the_frame_and_move_by_their_velocity_between_bounces():
    batch = MovingDiscs(image_size=32, num_discs=2, seq_len=12, speed=14.0, seed=5).sample(16)
    p, v = batch.positions, batch.velocities
    limit = 32 - disc_box(32)
    assert p.min() >= 0 and p.max() <= limit
    torch.testing.assert_close(p[:, 1:], (p[:, :-1] + v[:, :-1]).clamp(0, limit))
    speed = v.norm(dim=-1)
    torch.testing.assert_close(speed, torch.full_like(speed, 7.0))  # 14 at 64 is 7 at 32
    assert (batch.labels == torch.tensor([0, 1])).all()  # the depth rank, 0 in front


def test_same_seed_same_stream_and_state_dict_resumes_it():
    a = MovingDiscs(image_size=16, seed=4)
    first = a.sample(3)
    state = a.state_dict()
    second = a.sample(3)
    b = MovingDiscs(image_size=16, seed=4)
    torch.testing.assert_close(b.sample(3).frames, first.frames)
    b.load_state_dict(state)
    torch.testing.assert_close(b.sample(3).positions, second.positions)
    test = make_disc_test_set(5, seed=4, batch_size=3, image_size=16)  # draws 3, then 2
    torch.testing.assert_close(test.frames[:3], first.frames)
    assert test.masks.shape == (5, 5, 2, 16, 16)


def test_same_colour_draws_every_disc_orange():
    discs = MovingDiscs(image_size=32, num_discs=3, colours="same", seq_len=1)
    # three 8-pixel discs apart: boxes at (0, 0), (12, 12), (24, 24), centres 4 px further
    frames, _ = discs.render(torch.tensor([[[[0.0, 0.0], [12.0, 12.0], [24.0, 24.0]]]]))
    for centre in (4, 16, 28):
        torch.testing.assert_close(frames[0, 0, :, centre, centre], rgb(ORANGE))


def test_the_example_video_draws_the_scene_background():
    spec = importlib.util.spec_from_file_location("make_video", EXAMPLES / "make_example_video.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    first = make.frame(0).astype(np.float64)
    far = first[0, 63]  # the top-right corner: no disc at t = 0
    assert np.abs(far - np.round(background(64)[0, 63])).max() == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scene", "discs", "--channels", "1"], "Invalid value for '--channels': the disc "
         "scene is RGB, use 3 (got 1)"),
        (["--disc-colours", "same"], "Invalid value for '--disc-colours': applies to --scene "
         "discs only"),
        (["--scene", "discs", "--data", "clips"], "Invalid value for '--scene': discs is "
         "built-in generated data; --data trains on a video instead"),
        (["--scene", "squares"], "'--scene': must be one of digits, discs, got 'squares'"),
    ],
)  # fmt: skip
def test_bad_disc_options_are_one_line_errors(tmp_path, args, message):
    result = run_cli("train", *tiny_args(steps=1), *args, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "run").exists()


def test_a_disc_run_trains_and_evaluates_with_positions_but_no_channel_test(
    tmp_path, monkeypatch
):
    from pyro_dvip.evaluation import run as evaluation_run

    options = dict(decoder="composite", encoder="residual",
                   background="static")  # fmt: skip
    config = make_config(**{**TINY, **options}, scene="discs", steps=2, seed=5)
    train(config, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["scene"], saved["disc_colours"]) == ("discs", "distinct")
    measured = []  # the held-out sequences each model is measured on

    def measure(dvip, config, data, options):
        measured.append(data)
        return unpatched(dvip, config, data, options)

    unpatched = evaluation_run.measure
    monkeypatch.setattr(evaluation_run, "measure", measure)
    result = run_cli(
        "evaluate", tmp_path / "run", "--samples", 40, "--particles", 2, "--iw-samples", 2,
        "--bootstrap", 5, "--rollouts", 2, "--examples", 2, "--contrast-frames", 8,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # 40 (z_t, z_t+1) pairs from 3-frame sequences: 20 sequences, the frozen disc test set of
    # seed 5 + 1,000,003 (the run's test seed), drawn with the run's scene
    options = dict(image_size=16, num_discs=2, seq_len=3, speed=3.6, arena="box")
    expected = make_disc_test_set(20, seed=5 + 1_000_003, colours="distinct", **options)
    assert len(measured) == 2  # the trained model and its untrained floor
    for data in measured:
        assert data.positions.shape == (20, 3, 2, 2)
        torch.testing.assert_close(data.positions, expected.positions, rtol=0, atol=0)
        torch.testing.assert_close(data.frames, expected.frames, rtol=0, atol=0)
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["held_out"]["data"] == "moving discs" and metrics["sequences"] == 20
    for model in ("trained", "untrained"):
        m = metrics[model]
        assert m["intervention"]["note"].startswith(f"{SHARED_CHANNEL} (discs drawn in RGB")
        assert len(m["alignment"]["r2"]) == 2 and len(m["alignment"]["r2"][0]) == 2
        assert m["identity"]["threshold_pixels"] == 0.5 * disc_box(16)
    assert "note: objects are discs" in result.output


def test_a_disc_run_stopped_with_until_and_resumed_equals_one_trained_straight(tmp_path):
    """The disc stream's position is saved in the checkpoint: the resumed run draws the
    sequences the straight one drew, so every logged number and the final weights agree."""
    args = [*tiny_args(steps=4), "--scene", "discs", "--decoder", "composite", "--background",
            "static", "--quiet"]  # fmt: skip
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_cli("train", *args, "--out", whole).exit_code == 0
    stopped = run_cli("train", *args, "--until", 2, "--out", parts)
    assert stopped.exit_code == 0, stopped.output
    assert [int(r["step"]) for r in read_metrics(parts)] == [1, 2]
    resumed = run_cli("train", "--out", parts, "--resume", "--quiet")
    assert resumed.exit_code == 0, resumed.output

    rows_whole, rows_parts = read_metrics(whole), read_metrics(parts)
    assert [int(r["step"]) for r in rows_parts] == [1, 2, 3, 4]
    clock = ("seconds", "frames_per_s")  # wall-clock columns: every other one must agree
    for a, b in zip(rows_whole, rows_parts):
        assert {k: v for k, v in a.items() if k not in clock} == {
            k: v for k, v in b.items() if k not in clock
        }
    final_whole, final_parts = (
        load_checkpoint(list_checkpoints(run)[-1]) for run in (whole, parts)
    )
    assert final_whole["step"] == final_parts["step"] == 4
    assert final_whole["model"].keys() == final_parts["model"].keys()
    for name, value in final_whole["model"].items():
        assert torch.equal(value, final_parts["model"][name]), name


def test_compare_labels_tell_the_disc_scene_one_channel_and_a_static_background_apart():
    from pyro_dvip.evaluation.compare import group_label

    config = json.loads(make_config(**TINY).to_json())
    assert "discs" not in group_label(config) and "channel" not in group_label(config)
    discs = {**config, "scene": "discs", "disc_colours": "same", "decoder": "composite",
             "decoder_weights": "per-factor", "background": "static"}  # fmt: skip
    label = group_label(discs)
    assert "composite decoder, static background" in label
    assert "discs (same" in label and "), speed 3.6" in label
    assert "one channel, speed 3.6" in group_label({**config, "channels": 1})


def test_check_elbo_passes_on_disc_sequences_with_the_composite_residual_guide():
    result = run_cli(
        "check-elbo", "--scene", "discs", "--decoder", "composite", "--decoder-weights",
        "per-factor", "--encoder", "residual", "--background", "static", "--factors", 2,
        "--factor-dim", 3, "--image-size", 16, "--width", 4, "--particles", 10,
        "--batch-size", 4, "--seq-len", 3,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.output
