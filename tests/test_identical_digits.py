"""--identical-digits: one MNIST image per sequence for every digit, and otherwise the same
random draws (pyro_dvip.data.moving_mnist)."""

import pytest
import torch
from conftest import run_cli, tiny_args

from pyro_dvip.data import MovingMNIST, load_digits, make_test_set

SIZE = dict(image_size=64, seq_len=4)
BOX = 28  # a digit's box at 64x64


@pytest.fixture(scope="module")
def train_digits():
    return load_digits("train")


def apart_patches(batch):
    """Each digit's box of every frame (channels=1) where the two boxes do not overlap: two
    (M, BOX, BOX) tensors, one per digit."""
    corner = batch.positions.round().long()  # (B, T, 2, 2) as (x, y)
    apart = ((corner[:, :, 0] - corner[:, :, 1]).abs() >= BOX).any(-1)  # (B, T)
    patches = [[], []]
    for b, t in apart.nonzero().tolist():
        for n in range(2):
            x, y = corner[b, t, n].tolist()
            patches[n].append(batch.frames[b, t, 0, y : y + BOX, x : x + BOX])
    return torch.stack(patches[0]), torch.stack(patches[1])


def test_the_stream_draws_one_image_per_sequence(train_digits):
    batch = MovingMNIST(*train_digits, channels=1, identical=True, seed=3, **SIZE).sample(128)
    assert torch.equal(batch.labels[:, 0], batch.labels[:, 1])
    first, second = apart_patches(batch)
    assert len(first) > 0 and first.amax() > 0  # frames where the digits are far apart
    assert torch.equal(first, second)
    # two different images otherwise, on the same frames
    other = MovingMNIST(*train_digits, channels=1, seed=3, **SIZE).sample(128)
    first, second = apart_patches(other)
    assert not torch.equal(first, second)


def test_identical_digits_use_the_same_random_draws(train_digits):
    same = MovingMNIST(*train_digits, identical=True, seed=5, **SIZE)
    usual = MovingMNIST(*train_digits, seed=5, **SIZE)
    for _ in range(2):  # and the stream advances alike
        a, b = same.sample(16), usual.sample(16)
        assert torch.equal(a.positions, b.positions) and torch.equal(a.velocities, b.velocities)
        assert torch.equal(a.labels[:, 0], b.labels[:, 0])  # digit 0's draw, for every digit
        assert torch.equal(a.frames[:, :, 0], b.frames[:, :, 0])  # digit 0's channel
    assert not torch.equal(a.labels[:, 1], b.labels[:, 1])


def test_the_frozen_test_set_draws_one_image_per_sequence(train_digits):
    test_set = make_test_set(*train_digits, 24, seed=11, batch_size=8, channels=1,
                             identical=True, **SIZE)  # fmt: skip
    assert torch.equal(test_set.labels[:, 0], test_set.labels[:, 1])
    first, second = apart_patches(test_set)
    assert len(first) > 0 and torch.equal(first, second)
    usual = make_test_set(*train_digits, 24, seed=11, batch_size=8, channels=1, **SIZE)
    assert torch.equal(test_set.positions, usual.positions)
    assert torch.equal(test_set.labels[:, 0], usual.labels[:, 0])


def test_identical_digits_with_the_disc_scene_is_a_one_line_error(tmp_path):
    result = run_cli("train", *tiny_args(steps=1), "--identical-digits", "--scene", "discs",
                     "--out", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '--identical-digits': applies to --scene digits only (discs: "
        "--disc-colours same)"
    )
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
