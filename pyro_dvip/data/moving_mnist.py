"""Colour Moving MNIST, generated on the fly as batched tensor operations.

Follows the authors' generator (``shared/paper/original-code-notes.md``): each sequence holds
``num_digits`` MNIST digits moving at constant speed in a uniformly random heading; at a wall
the position is clamped back into the frame and that velocity component negated. Digit ``n``
is drawn in colour channel ``n`` (red, green, blue), so each channel holds exactly one digit;
with one channel all digits share it and overlaps combine with max.

``arena="circle"`` (not the paper's) confines each digit's centre to the disc inscribed in the
frame and reflects its velocity off the circle's normal. In the paper's box a bounce negates
one velocity component, so each axis of each digit moves independently of everything else and
a model may factor the scene by axis (all x in one factor, all y in the other) as validly as by
digit; off a circle a bounce turns the whole velocity, so only a digit is independent of the
rest (docs/results.md).

Everything is done for the whole batch at once on the generator's device; the only Python
loops run over time steps (for the bounces) and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from ..config import ARENAS

MNIST_SIZE = 28
REFERENCE_IMAGE_SIZE = 64  # image size at which `speed` and the 28-pixel digit box are given


def digit_box(image_size: int) -> int:
    """The side in pixels of a digit's box at ``image_size``: 28 at 64, scaled with the frame."""
    return round(MNIST_SIZE * image_size / REFERENCE_IMAGE_SIZE)


@dataclass
class MovingMNISTBatch:
    """A batch of Moving MNIST sequences with the ground truth that generated them.

    Shapes: B sequences, T frames, N digits, C channels, H = W = image size.

    Attributes:
        frames: float32 ``(B, T, C, H, W)`` in [0, 1] (digit pixel / 255).
        positions: float32 ``(B, T, N, 2)``, the top-left corner ``(x, y)`` of each digit's
            box in pixels (x = column, y = row). Continuous; the digit is drawn at
            ``positions.round()``. Always within ``[0, H - box]``.
        velocities: float32 ``(B, T, N, 2)``, ``(vx, vy)`` in pixels per frame: the velocity
            that moves the digit from step t to t + 1, i.e. after any bounce at step t.
            ``positions[:, t + 1] == clamp(positions[:, t] + velocities[:, t])``.
        labels: int64 ``(B, N)``, the class of each digit (constant over the sequence); for
            the disc scene (``discs.py``), each disc's depth rank (0 in front).
        masks: float32 ``(B, T, N, H, W)`` in [0, 1], the share of each pixel where object n
            is seen (after occlusion), or None: the disc scene has them, digits do not.
    """

    frames: torch.Tensor
    positions: torch.Tensor
    velocities: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> MovingMNISTBatch:
        """Return a new batch with every tensor on ``device``."""
        return MovingMNISTBatch(*(None if t is None else t.to(device) for t in self._tensors()))

    @staticmethod
    def cat(batches: list[MovingMNISTBatch]) -> MovingMNISTBatch:
        """The batches' sequences, one batch after another, in one batch."""
        columns = zip(*(batch._tensors() for batch in batches))
        return MovingMNISTBatch(*(None if c[0] is None else torch.cat(c) for c in columns))

    def _tensors(self) -> list[torch.Tensor | None]:
        return [getattr(self, f.name) for f in fields(self)]


class MovingBoxes:
    """What both generators share: ``num_objects`` boxes of side ``box`` pixels moving in an
    ``image_size`` frame as the module docstring says, ``speed`` (pixels per frame at 64×64)
    scaled to the frame.

    Randomness comes only from the generator's own ``torch.Generator`` on ``device``, seeded
    with ``seed``: the same seed gives the same stream of batches, and ``state_dict`` /
    ``load_state_dict`` save and restore the position in that stream. Subclasses draw what
    the boxes hold in ``sample``.
    """

    def __init__(self, *, image_size: int, box: int, num_objects: int, seq_len: int,
                 speed: float, arena: str, device: torch.device | str,
                 seed: int) -> None:  # fmt: skip
        if image_size < 16 or image_size <= box:
            raise ValueError(
                f"image_size must be at least 16 and larger than its {box}-pixel box, "
                f"got {image_size}"
            )
        _check_at_least_one(seq_len=seq_len)
        if not speed >= 0:
            raise ValueError(f"speed must be non-negative, got {speed}")
        if arena not in ARENAS:
            raise ValueError(f"arena must be one of {', '.join(ARENAS)}, got {arena!r}")
        self.image_size = image_size
        self.box = box
        self.num_objects = num_objects
        self.seq_len = seq_len
        self.arena = arena
        self.speed = speed * image_size / REFERENCE_IMAGE_SIZE  # pixels per frame at this size
        self.device = torch.device(device)
        self._generator = torch.Generator(device=self.device).manual_seed(seed)

    def trajectories(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions and velocities (B, T, N, 2) of ``batch_size`` new sequences: the boxes'
        top-left corners, as in ``sample`` (the stream advances as ``sample`` would)."""
        _check_at_least_one(batch_size=batch_size)
        return draw_motion(
            self._generator, batch_size, self.seq_len, self.num_objects,
            limit=float(self.image_size - self.box), speed=self.speed, arena=self.arena,
        )  # fmt: skip

    def frozen(self, num_sequences: int, batch_size: int = 256) -> MovingMNISTBatch:
        """``num_sequences`` sequences drawn ``batch_size`` at a time, in one batch."""
        _check_at_least_one(num_sequences=num_sequences, batch_size=batch_size)
        starts = range(0, num_sequences, batch_size)
        batches = [self.sample(min(batch_size, num_sequences - s)) for s in starts]
        return MovingMNISTBatch.cat(batches)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The random stream's position: ``{"generator": ByteTensor}``."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a position saved by ``state_dict``; the next ``sample`` continues from it."""
        self._generator.set_state(state["generator"])


def _check_at_least_one(**counts: int) -> None:
    """Raise ``ValueError`` naming the first of ``counts`` below 1."""
    for name, count in counts.items():
        if count < 1:
            raise ValueError(f"{name} must be at least 1, got {count}")


class MovingMNIST(MovingBoxes):
    """Seeded, on-the-fly colour Moving MNIST generator.

    Per sequence, independently: each digit is drawn uniformly from ``digits``; its box's
    start position is uniform over ``[0, image_size - box]`` in x and y (continuous); its
    heading is uniform in ``[0, 2π)`` and its speed constant. Each step
    ``position += velocity``; a component that leaves ``[0, image_size - box]`` is clamped
    back and its velocity negated (clamp-and-negate, as in the authors' code).

    With ``arena="circle"`` the box's top-left corner (equivalently its centre) stays in the
    disc of radius ``(image_size - box) / 2`` around the middle of that range: the start is
    uniform over the disc, and a step that leaves it is clamped back onto the circle and the
    velocity reflected about the circle's normal there (``v - 2 (v·n) n``: speed kept, heading
    turned). It uses the same random draws as the box, so only the motion differs.

    The digit box is ``round(28 * image_size / 64)`` pixels (digits are resized once, with
    antialiasing); ``speed`` is in pixels per frame at 64×64 and scales with
    ``image_size / 64``, so a sequence looks the same at every resolution. Randomness and
    its stream are :class:`MovingBoxes`'.

    Args:
        digits: uint8 ``(M, 28, 28)`` digit images, 0..255.
        labels: int64 ``(M,)`` their classes.
        image_size: frame height and width in pixels (≥ 16).
        channels: 1 (all digits in one channel, max on overlap) or ≥ ``num_digits``
            (digit n in channel n, the rest zero).
        num_digits: digits per sequence, 1 to 3.
        seq_len: frames per sequence (≥ 1).
        speed: pixels per frame at 64×64 (≥ 0).
        arena: ``"box"`` (the paper's walls) or ``"circle"`` (a round wall).
        identical: every digit of a sequence is the same image (drawn once per sequence), so
            only motion tells the digits apart.
        device: where the digits live and batches are generated.
        seed: seed of the generator's random stream.
    """

    def __init__(
        self,
        digits: torch.Tensor,
        labels: torch.Tensor,
        *,
        image_size: int = 64,
        channels: int = 3,
        num_digits: int = 2,
        seq_len: int = 5,
        speed: float = 3.6,
        arena: str = "box",
        identical: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        if digits.dtype != torch.uint8 or digits.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
            raise ValueError(
                f"digits must be a uint8 tensor of shape (M, 28, 28), "
                f"got {digits.dtype} {tuple(digits.shape)}"
            )
        if len(digits) == 0:
            raise ValueError("digits must hold at least one digit")
        if labels.shape != (len(digits),):
            raise ValueError(
                f"labels must have shape ({len(digits)},) to match digits, "
                f"got {tuple(labels.shape)}"
            )
        if not 1 <= num_digits <= 3:
            raise ValueError(f"num_digits must be 1, 2 or 3, got {num_digits}")
        if not (channels == 1 or channels >= num_digits):
            raise ValueError(
                f"channels must be 1 or at least num_digits={num_digits}, got {channels}"
            )
        super().__init__(
            image_size=image_size, box=digit_box(image_size), num_objects=num_digits,
            seq_len=seq_len, speed=speed, arena=arena, device=device, seed=seed,
        )  # fmt: skip
        self.channels, self.identical = channels, identical

        images = digits.to(self.device, torch.float32).div(255.0).unsqueeze(1)  # (M, 1, 28, 28)
        if self.box != MNIST_SIZE:
            images = F.interpolate(
                images, size=(self.box, self.box), mode="bilinear", antialias=True
            )
        self._digits = images.squeeze(1).clamp(0.0, 1.0)  # (M, S, S) in [0, 1]
        self._labels = labels.to(self.device, torch.int64)

        # Flat offsets of a digit's pixels in an (H, W) canvas, relative to its top-left corner.
        rows = torch.arange(self.box, device=self.device)
        self._box_offsets = (rows[:, None] * image_size + rows[None, :]).reshape(-1)  # (S*S,)

    def sample(self, batch_size: int) -> MovingMNISTBatch:
        """Generate ``batch_size`` new sequences (advances the random stream)."""
        which, positions, velocities = self._draw(batch_size)
        frames = self._render(positions, which)
        return MovingMNISTBatch(
            frames=frames, positions=positions, velocities=velocities, labels=self._labels[which]
        )

    def trajectories(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The motion of ``batch_size`` new sequences without drawing them: positions and
        velocities ``(B, T, N, 2)`` as in ``sample`` (the same random draws, so the stream
        advances exactly as ``sample`` would)."""
        _, positions, velocities = self._draw(batch_size)
        return positions, velocities

    def _draw(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Digit indices (B, N), then the boxes' positions and velocities (B, T, N, 2)."""
        _check_at_least_one(batch_size=batch_size)
        which = torch.randint(len(self._digits), (batch_size, self.num_objects),
                              generator=self._generator, device=self.device)  # fmt: skip
        if self.identical:  # the same draws as otherwise, digit 0's image for every digit
            which = which[:, :1].expand(-1, self.num_objects)
        return which, *super().trajectories(batch_size)

    def _render(self, positions: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Draw digits ``which`` (B, N) at ``positions.round()`` (B, T, N, 2): (B, T, C, H, W).

        One scatter with max over a flat (C * H * W) canvas per frame: digit n writes to
        channel n (or channel 0 when there is one channel, where max combines overlaps).
        """
        B, T, N, _ = positions.shape
        H = W = self.image_size
        corner = positions.round().long()  # (B, T, N, 2) as (x, y)
        channel = torch.arange(N, device=self.device) * (self.channels > 1)  # (N,)
        start = channel * (H * W) + corner[..., 1] * W + corner[..., 0]  # (B, T, N) box corners
        index = (start[..., None] + self._box_offsets).reshape(B, T, -1)  # (B, T, N*S*S)
        values = self._digits[which].reshape(B, 1, -1).expand(B, T, -1)  # (B, T, N*S*S), no copy
        canvas = torch.zeros(B, T, self.channels * H * W, device=self.device)
        canvas.scatter_reduce_(2, index, values, reduce="amax")
        return canvas.view(B, T, self.channels, H, W)


def draw_motion(
    generator: torch.Generator,
    batch_size: int,
    seq_len: int,
    num_objects: int,
    *,
    limit: float,
    speed: float,
    arena: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and velocities (B, T, N, 2) of ``num_objects`` boxes moving as in the module
    docstring: the top-left corner stays in ``[0, limit]`` (box) or in the disc of diameter
    ``limit`` centred there (circle); ``speed`` in pixels per frame. Draws a uniform start
    (B, N, 2) then a heading (B, N) from ``generator``, on its device."""
    B, T, N = batch_size, seq_len, num_objects
    real = {"dtype": torch.float32, "generator": generator, "device": generator.device}
    uniform = torch.rand(B, N, 2, **real)  # (B, N, 2): the start position
    heading = torch.rand(B, N, **real) * (2 * math.pi)  # (B, N)
    velocity = speed * _unit(heading)  # (B, N, 2)
    step = _box_step if arena == "box" else _circle_step
    position = uniform * limit if arena == "box" else _in_disc(uniform, limit)

    positions = torch.empty(B, T, N, 2, dtype=torch.float32, device=generator.device)
    velocities = torch.empty_like(positions)
    positions[:, 0], velocities[:, 0] = position, velocity
    for t in range(1, T):
        position, velocity = step(position + velocity, velocity, limit)
        positions[:, t], velocities[:, t] = position, velocity
    return positions, velocities


def _box_step(position, velocity, limit: float):
    """Clamp a moved ``position`` into ``[0, limit]`` and negate the components that hit."""
    hit_wall = (position < 0) | (position > limit)
    return position.clamp(0.0, limit), torch.where(hit_wall, -velocity, velocity)


def _in_disc(uniform: torch.Tensor, limit: float) -> torch.Tensor:
    """Uniform points of the disc of diameter ``limit`` centred in ``[0, limit]^2``."""
    radius = limit / 2 * uniform[..., :1].sqrt()
    return limit / 2 + radius * _unit(uniform[..., 1] * (2 * math.pi))


def _circle_step(position, velocity, limit: float):
    """Clamp a moved ``position`` onto the circle and reflect the velocity off its normal."""
    offset = position - limit / 2
    distance = offset.norm(dim=-1, keepdim=True)
    hit_wall = distance > limit / 2
    normal = offset / distance.clamp_min(1e-12)
    reflected = velocity - 2 * (velocity * normal).sum(-1, keepdim=True) * normal
    return (
        torch.where(hit_wall, limit / 2 + normal * (limit / 2), position),
        torch.where(hit_wall, reflected, velocity),
    )


def _unit(angle: torch.Tensor) -> torch.Tensor:
    """Unit vectors (..., 2) as (x, y) at ``angle`` radians."""
    return torch.stack([angle.cos(), angle.sin()], dim=-1)


def make_test_set(
    digits: torch.Tensor,
    labels: torch.Tensor,
    num_sequences: int,
    *,
    seed: int,
    batch_size: int = 256,
    **moving_mnist_kwargs,
) -> MovingMNISTBatch:
    """A frozen test set: ``num_sequences`` sequences generated on CPU from ``seed``.

    The result depends only on the arguments (not on any training stream); pass held-out
    digits, e.g. ``load_digits("test")``. ``moving_mnist_kwargs`` go to ``MovingMNIST``
    (``image_size``, ``channels``, ``num_digits``, ``seq_len``, ``speed``, ``arena``,
    ``identical``); move
    the result with ``.to(device)``.
    """
    generator = MovingMNIST(digits, labels, device="cpu", seed=seed, **moving_mnist_kwargs)
    return generator.frozen(num_sequences, batch_size)
