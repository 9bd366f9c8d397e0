"""--identity-cue: the first frame of each training sequence draws digit o at brightness
1 - gap * o / (N - 1) in one channel; later frames, the held-out set and the evaluation do not."""

import json

import pytest
import torch
from conftest import run_cli, tiny_args

from pyro_dvip.build import make_data
from pyro_dvip.config import make_config
from pyro_dvip.data import MovingMNIST


def digits(n=6):
    """Digits whose pixels are all 255 inside a 4x4 square: a frame's values are known."""
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 12:16, 12:16] = 255
    return images, torch.arange(n) % 10


def stream(gap, num_digits=2, seed=3, **kwargs):
    images, labels = digits()
    options = dict(image_size=32, channels=1, num_digits=num_digits, seq_len=4, speed=0.0)
    return MovingMNIST(images, labels, seed=seed, identity_cue=gap, **{**options, **kwargs})


def by_hand(positions, num_digits, gap):
    """Frame 1 built by hand: each digit a square of ones, resized as the generator resizes
    digits, scaled by its brightness; where squares overlap the brighter one wins (max)."""
    S = round(28 * 32 / 64)
    square = torch.nn.functional.interpolate(
        digits(1)[0].float().div(255)[None], size=(S, S), mode="bilinear", antialias=True
    )[0, 0].clamp(0, 1)
    frame = torch.zeros(len(positions), 32, 32)
    for o in range(num_digits):
        level = 1 - gap * o / (num_digits - 1)
        x, y = positions[:, 0, o].round().long().unbind(-1)
        for b in range(len(positions)):
            patch = frame[b, y[b] : y[b] + S, x[b] : x[b] + S]
            patch.copy_(torch.maximum(patch, level * square))
    return frame


@pytest.mark.parametrize("num_digits,gap", [(2, 0.5), (3, 0.6)])
def test_first_frame_dims_digit_o_by_gap_times_o_over_n_minus_1(num_digits, gap):
    plain, cued = stream(0.0, num_digits).sample(8), stream(gap, num_digits).sample(8)
    assert torch.equal(plain.positions, cued.positions)  # the same draws, only brightness differs
    assert torch.equal(cued.frames[:, 1:], plain.frames[:, 1:])  # later frames untouched
    assert torch.allclose(plain.frames[:, 0, 0], by_hand(plain.positions, num_digits, 0.0))
    assert torch.allclose(cued.frames[:, 0, 0], by_hand(cued.positions, num_digits, gap))
    assert not torch.equal(cued.frames[:, 0], plain.frames[:, 0])  # the cue changed frame 1


def test_training_stream_has_the_cue_and_the_held_out_set_does_not():
    config = make_config("cpu-demo", channels=1, identity_cue=0.5, test_sequences=4)
    train_stream, test_frames = make_data(config, torch.device("cpu"))
    assert train_stream.identity_cue == 0.5
    _, plain_test = make_data(make_config("cpu-demo", channels=1, test_sequences=4), "cpu")
    assert torch.equal(test_frames, plain_test)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(identity_cue=0.5), "identity_cue: applies to one channel (--channels 1)"),
        (dict(identity_cue=0.5, channels=1, num_digits=1), "and 1 digit"),
        (dict(identity_cue=1.0, channels=1), "identity_cue: must be >= 0 and < 1, got 1.0"),
        (
            dict(identity_cue=0.5, scene="discs"),
            "identity_cue: applies to the built-in digits (--scene digits) only",
        ),
    ],
)
def test_bad_identity_cue_is_a_one_line_error(options, message):
    with pytest.raises(ValueError, match=r"^identity_cue: ") as error:
        make_config("cpu-demo", **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_cli_trains_with_the_cue_and_records_it(tmp_path):
    out = tmp_path / "run"
    args = tiny_args(steps=2, checkpoint_every=2)
    result = run_cli("train", *args, "--channels", "1", "--identity-cue", "0.4", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["identity_cue"] == 0.4
    bad = run_cli("train", *args, "--identity-cue", "0.4", "--out", tmp_path / "bad")
    assert bad.exit_code != 0
    assert "Invalid value for '--identity-cue': applies to one channel (--channels 1)" in bad.output
