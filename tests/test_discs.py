"""The disc scene (beyond the paper): occluding discs over the example video's background, with
the positions and masks the probes and identity read, and `dvip train/evaluate --scene discs`."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli, tiny_args

from pyro_dvip import make_config, train
from pyro_dvip.config import DISC_PALETTE, disc_colours
from pyro_dvip.data.discs import MovingDiscs, background, disc_box, make_disc_test_set
from pyro_dvip.evaluation.alignment import SHARED_CHANNEL

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def rgb(colour):
    return torch.tensor(colour, dtype=torch.float32) / 255


def test_a_disc_box_is_16_pixels_at_64_and_scales_with_the_frame():
    assert [disc_box(s) for s in (16, 32, 64, 128)] == [4, 8, 16, 32]


def test_two_placed_discs_draw_their_colours_the_front_one_over_the_overlap():
    discs = MovingDiscs(image_size=32, num_discs=2, seq_len=1)  # 8-pixel discs, radius 4
    # disc 0's box at (4, 4): centre (8, 8); disc 1's at (8, 4): centre (12, 8), 4 px right
    positions = torch.tensor([[[[4.0, 4.0], [8.0, 4.0]]]])  # (B, T, N, 2)
    frames, masks = discs.render(positions)
    orange, blue = rgb(DISC_PALETTE[0]), rgb(DISC_PALETTE[1])
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
    colours = torch.stack([rgb(c) for c in DISC_PALETTE])  # (N, 3)
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


def test_same_colour_and_hex_colours_and_a_black_background():
    assert disc_colours("same", 3) == [DISC_PALETTE[0]] * 3
    assert disc_colours("#ff0000, 00FF80", 2) == [(255, 0, 0), (0, 255, 128)]
    discs = MovingDiscs(image_size=32, colours="ff0000,00ff80", backdrop="black", seq_len=1)
    frames, _ = discs.render(torch.tensor([[[[0.0, 0.0], [24.0, 24.0]]]]))
    torch.testing.assert_close(frames[0, 0, :, 4, 4], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(frames[0, 0, :, 28, 28], torch.tensor([0.0, 1.0, 128 / 255]))
    assert frames[0, 0, :, 16, 4].abs().sum() == 0


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
        (["--scene", "discs", "--disc-colours", "f08c1e"], "Invalid value for "
         "'--disc-colours': must be distinct or same, or 2 hex colours separated by commas "
         "(one per disc, e.g. f08c1e,285ae6), got 'f08c1e'"),
        (["--scene", "discs", "--data", "clips"], "Invalid value for '--scene': discs is "
         "built-in generated data; --data trains on a video instead"),
        (["--scene", "squares"], "'squares' is not one of 'digits', 'discs'"),
    ],
)  # fmt: skip
def test_bad_disc_options_are_one_line_errors(tmp_path, args, message):
    result = run_cli("train", *tiny_args(steps=1), *args, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "run").exists()


def test_a_disc_run_trains_and_evaluates_with_positions_but_no_channel_test(tmp_path):
    options = dict(decoder="composite", decoder_weights="per-factor", encoder="residual",
                   background="static")  # fmt: skip
    config = make_config(**{**TINY, **options}, scene="discs", steps=2)
    train(config, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["scene"], saved["disc_colours"], saved["disc_background"]) == (
        "discs",
        "distinct",
        "texture",
    )
    result = run_cli(
        "evaluate", tmp_path / "run", "--samples", 40, "--particles", 2, "--iw-samples", 2,
        "--bootstrap", 5, "--rollouts", 2, "--examples", 2,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["held_out"]["data"] == "moving discs"
    for model in ("trained", "untrained"):
        m = metrics[model]
        assert m["intervention"]["note"].startswith(f"{SHARED_CHANNEL} (discs drawn in RGB")
        assert len(m["alignment"]["r2"]) == 2 and len(m["alignment"]["r2"][0]) == 2
        assert m["identity"]["threshold_pixels"] == 0.5 * disc_box(16)
    assert "note: objects are discs" in result.output


def test_compare_labels_tell_the_disc_scene_one_channel_and_a_static_background_apart():
    from pyro_dvip.evaluation.compare import group_label

    config = json.loads(make_config(**TINY).to_json())
    assert "discs" not in group_label(config) and "channel" not in group_label(config)
    discs = {**config, "scene": "discs", "disc_colours": "same", "decoder": "composite",
             "decoder_weights": "per-factor", "background": "static"}  # fmt: skip
    label = group_label(discs)
    assert "composite decoder (per-factor weights), static background" in label
    assert "discs (same, texture), speed 3.6" in label
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
