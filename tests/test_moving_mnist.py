"""Tests for pyro_dvip.data: digit splits and the Moving MNIST generator."""

import hashlib

import pytest
import torch

from pyro_dvip.data import MovingMNIST, MovingMNISTBatch, load_digits, make_test_set


@pytest.fixture(scope="module")
def train_digits():
    return load_digits("train")


def box_size(image_size):
    return round(28 * image_size / 64)


def box_masks(positions, image_size):
    """(B, T, N, H, W) boolean masks of each digit's box at its rounded position."""
    size = box_size(image_size)
    corner = positions.round().long()  # (B, T, N, 2) as (x, y)
    pixel = torch.arange(image_size)
    x, y = corner[..., 0, None], corner[..., 1, None]
    in_cols = (pixel >= x) & (pixel < x + size)  # (B, T, N, W)
    in_rows = (pixel >= y) & (pixel < y + size)  # (B, T, N, H)
    return in_rows[..., :, None] & in_cols[..., None, :]


def reference_render(batch, digit_images, image_size, channels):
    """Loop-based rendering; `batch.labels` hold indices into `digit_images` (uint8)."""
    B, T, N, _ = batch.positions.shape
    size = box_size(image_size)
    frames = torch.zeros(B, T, channels, image_size, image_size)
    corner = batch.positions.round().long()
    for b in range(B):
        for t in range(T):
            for n in range(N):
                x, y = corner[b, t, n].tolist()
                c = n if channels > 1 else 0
                window = frames[b, t, c, y : y + size, x : x + size]
                digit = digit_images[batch.labels[b, n]].float() / 255
                window.copy_(torch.maximum(window, digit))
    return frames


@pytest.mark.parametrize("image_size", [32, 64])
def test_batch_has_documented_shapes_dtypes_and_range(train_digits, image_size):
    batch = MovingMNIST(*train_digits, image_size=image_size, seq_len=5).sample(4)
    assert batch.frames.shape == (4, 5, 3, image_size, image_size)
    assert batch.positions.shape == batch.velocities.shape == (4, 5, 2, 2)
    assert batch.labels.shape == (4, 2)
    assert batch.frames.dtype == batch.positions.dtype == batch.velocities.dtype == torch.float32
    assert batch.labels.dtype == torch.int64
    assert batch.frames.min() >= 0 and batch.frames.max() <= 1
    assert batch.frames.max() > 0.5


@pytest.mark.parametrize("image_size", [32, 64])
def test_digits_stay_inside_frame_and_their_box_over_long_sequence(train_digits, image_size):
    batch = MovingMNIST(*train_digits, image_size=image_size, seq_len=60, seed=1).sample(16)
    limit = image_size - box_size(image_size)
    assert batch.positions.min() >= 0 and batch.positions.max() <= limit
    masks = box_masks(batch.positions, image_size)  # (B, T, N, H, W)
    for n in range(2):
        channel = batch.frames[:, :, n]  # (B, T, H, W)
        assert channel[~masks[:, :, n]].abs().max() == 0
        assert (channel.flatten(2).sum(-1) > 0).all()  # every frame shows the digit


def test_each_colour_channel_holds_exactly_its_own_digit(train_digits):
    images = train_digits[0][:50]
    # Labels set to indices so a batch says which image each digit is.
    generator = MovingMNIST(images, torch.arange(50), image_size=64, seq_len=6, seed=3)
    batch = generator.sample(8)
    assert torch.equal(batch.frames, reference_render(batch, images, 64, channels=3))
    assert batch.frames[:, :, 2].abs().max() == 0  # blue is empty with two digits


def test_single_channel_combines_overlapping_digits_by_max():
    ramp = torch.arange(28, dtype=torch.uint8) * 9  # 0..243
    images = torch.stack([ramp.expand(28, 28), ramp[:, None].expand(28, 28)])  # cols, rows
    generator = MovingMNIST(images, torch.arange(2), image_size=64, channels=1, seq_len=5, seed=4)
    batch = generator.sample(32)
    masks = box_masks(batch.positions, 64)  # (B, T, N, H, W)
    assert (masks[:, :, 0] & masks[:, :, 1]).sum() > 1000  # the boxes do overlap
    assert batch.frames.shape == (32, 5, 1, 64, 64)
    assert torch.equal(batch.frames, reference_render(batch, images, 64, channels=1))


@pytest.mark.parametrize(("image_size", "speed"), [(64, 3.6), (32, 1.8)])
def test_bounces_negate_velocity_and_conserve_scaled_speed(train_digits, image_size, speed):
    batch = MovingMNIST(*train_digits, image_size=image_size, seq_len=60, seed=5).sample(32)
    limit = image_size - box_size(image_size)
    torch.testing.assert_close(batch.velocities.norm(dim=-1), torch.full((32, 60, 2), speed))

    moved = batch.positions[:, :-1] + batch.velocities[:, :-1]  # (B, T-1, N, 2)
    hit_wall = (moved < 0) | (moved > limit)
    before, after = batch.velocities[:, :-1], batch.velocities[:, 1:]
    assert hit_wall.sum() > 50
    assert torch.equal(after[hit_wall], -before[hit_wall])
    assert torch.equal(after[~hit_wall], before[~hit_wall])
    assert torch.equal(batch.positions[:, 1:], moved.clamp(0, limit))
    at_wall = batch.positions[:, 1:][hit_wall]
    assert ((at_wall == 0) | (at_wall == limit)).all()


def test_circle_arena_keeps_digits_in_its_disc_and_turns_the_whole_velocity(train_digits):
    image_size, speed = 32, 7.0  # 7 px/frame at 32x32 = 14 at 64x64
    generator = MovingMNIST(*train_digits, image_size=image_size, seq_len=40, speed=14.0,
                            arena="circle", seed=3)  # fmt: skip
    batch = generator.sample(32)
    radius = (image_size - box_size(image_size)) / 2
    offset = batch.positions - radius  # from the disc's centre, (B, T, N, 2)
    assert float(offset.norm(dim=-1).max()) <= radius + 1e-4
    assert float(offset[:, 0].norm(dim=-1).max()) < radius  # starts inside
    torch.testing.assert_close(batch.velocities.norm(dim=-1), torch.full((32, 40, 2), speed))
    masks = box_masks(batch.positions, image_size)  # every box lies inside the frame
    assert masks.flatten(-2).sum(-1).eq(box_size(image_size) ** 2).all()

    moved = batch.positions[:, :-1] + batch.velocities[:, :-1]
    hit_wall = (moved - radius).norm(dim=-1) > radius  # (B, T-1, N)
    before, after = batch.velocities[:, :-1], batch.velocities[:, 1:]
    assert hit_wall.sum() > 100
    torch.testing.assert_close(after[~hit_wall], before[~hit_wall])
    torch.testing.assert_close(batch.positions[:, 1:][~hit_wall], moved[~hit_wall])
    normal = (batch.positions[:, 1:] - radius)[hit_wall] / radius  # unit normal at the wall
    torch.testing.assert_close(normal.norm(dim=-1), torch.ones(int(hit_wall.sum())))
    # a reflection: the tangential part is kept, the normal part negated
    dot_before = (before[hit_wall] * normal).sum(-1)
    dot_after = (after[hit_wall] * normal).sum(-1)
    torch.testing.assert_close(dot_after, -dot_before, atol=1e-4, rtol=1e-4)
    assert (dot_after < 0).all()  # heading back inside
    # unlike the box, a bounce changes both components: x and y are not independent
    changed = (after[hit_wall] - before[hit_wall]).abs() > 1e-3
    assert changed.all(-1).float().mean() > 0.9


def test_circle_arena_uses_the_same_draws_as_the_box(train_digits):
    box = MovingMNIST(*train_digits, image_size=32, seq_len=3, speed=0.0, seed=5).sample(16)
    circle = MovingMNIST(*train_digits, image_size=32, seq_len=3, speed=0.0, arena="circle",
                         seed=5).sample(16)  # fmt: skip
    assert torch.equal(box.labels, circle.labels)
    torch.testing.assert_close(box.velocities, circle.velocities)
    assert not torch.equal(box.positions, circle.positions)


def test_same_seed_gives_identical_batches_and_different_seed_differs(train_digits):
    first = MovingMNIST(*train_digits, seed=7).sample(4)
    again = MovingMNIST(*train_digits, seed=7).sample(4)
    other = MovingMNIST(*train_digits, seed=8).sample(4)
    for name in ("frames", "positions", "velocities", "labels"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert not torch.equal(first.positions, other.positions)
    assert not torch.equal(first.frames, other.frames)


def test_trajectories_are_samples_motion_and_advance_the_stream_alike(train_digits):
    drawn = MovingMNIST(*train_digits, arena="circle", seed=3)
    moved = MovingMNIST(*train_digits, arena="circle", seed=3)
    for batch_size in (4, 6):
        batch = drawn.sample(batch_size)
        positions, velocities = moved.trajectories(batch_size)
        assert positions.shape == (batch_size, 5, 2, 2)
        assert torch.equal(positions, batch.positions)
        assert torch.equal(velocities, batch.velocities)


def test_state_dict_resumes_the_exact_stream(train_digits):
    generator = MovingMNIST(*train_digits, seed=9)
    generator.sample(3)
    state = generator.state_dict()
    expected = [generator.sample(3), generator.sample(5)]

    resumed = MovingMNIST(*train_digits, seed=123)
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.sample(len(want.labels))
        assert torch.equal(got.frames, want.frames)
        assert torch.equal(got.positions, want.positions)
        assert torch.equal(got.labels, want.labels)


def test_make_test_set_is_frozen_and_concatenates_batches(train_digits):
    test_set = make_test_set(*train_digits, 10, seed=11, batch_size=4, image_size=32, seq_len=3)
    assert test_set.frames.shape == (10, 3, 3, 32, 32)
    assert test_set.labels.shape == (10, 2)
    again = make_test_set(*train_digits, 10, seed=11, batch_size=4, image_size=32, seq_len=3)
    other = make_test_set(*train_digits, 10, seed=12, batch_size=4, image_size=32, seq_len=3)
    assert torch.equal(test_set.frames, again.frames)
    assert not torch.equal(test_set.frames, other.frames)
    assert not torch.equal(test_set.frames[:4], test_set.frames[4:8])  # batches differ


def test_batch_to_returns_a_new_batch():
    batch = MovingMNISTBatch(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1).long())
    moved = batch.to("cpu")
    assert isinstance(moved, MovingMNISTBatch) and moved is not batch


def test_digit_splits_are_disjoint_balanced_and_cover_all_classes():
    train_images, train_labels = load_digits("train")
    test_images, test_labels = load_digits("test")
    assert train_images.shape == (4000, 28, 28) and test_images.shape == (1000, 28, 28)
    assert train_images.dtype == torch.uint8 and train_labels.dtype == torch.int64
    assert torch.equal(train_labels.bincount(), torch.full((10,), 400))
    assert torch.equal(test_labels.bincount(), torch.full((10,), 100))

    def hashes(images):
        return {hashlib.sha1(image.numpy().tobytes()).hexdigest() for image in images}

    assert len(hashes(train_images)) == 4000
    assert hashes(train_images).isdisjoint(hashes(test_images))


def test_unknown_split_is_rejected_with_allowed_values():
    with pytest.raises(ValueError, match="split") as error:
        load_digits("valid")
    assert "'valid'" in str(error.value) and "'train'" in str(error.value)


def test_missing_full_mnist_raises_file_not_found_naming_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded") as error:
        load_digits("train", root=str(tmp_path))
    assert str(tmp_path) in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"num_digits": 0}, "num_digits"),
        ({"num_digits": 4}, "num_digits"),
        ({"num_digits": 3, "channels": 2}, "channels"),
        ({"image_size": 15}, "image_size"),
        ({"seq_len": 0}, "seq_len"),
        ({"speed": -1.0}, "speed"),
        ({"arena": "square"}, "arena"),
    ],
)
def test_invalid_settings_raise_value_error_naming_the_parameter(train_digits, kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        MovingMNIST(*train_digits, **kwargs)
