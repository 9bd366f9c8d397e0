"""Moving discs that occlude each other over a textured background, with ground truth.

Not the paper's data: a ground-truthed version of ``examples/make_example_video.py`` (built-in
data, ``dvip train --scene discs``), for the scene the colour Moving MNIST hands over (one
object per colour channel, nothing behind). Here every object is drawn in RGB, the discs may
share a colour, and where two overlap the front one hides the other: an additive decoder
cannot draw that, a composited one can (``--decoder composite``).

The motion is Moving MNIST's (``moving_mnist.draw_motion``: the same walls, arenas and speeds),
applied to each disc's bounding box of side ``disc_box(image_size)`` (16 pixels at 64x64),
so the probes read the same thing as for digits: the box's top-left corner. Disc 0 is in
front of disc 1, which is in front of disc 2. Edges are anti-aliased at the disc's exact
(continuous) centre: full colour inside, a one-pixel ramp at the rim, as in the example video.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import DISC_COLOURS
from .moving_mnist import REFERENCE_IMAGE_SIZE, MovingBoxes, MovingMNISTBatch

# The discs' colours (RGB 0..255): orange and blue as in examples/video, then green
DISC_PALETTE = ((240, 140, 30), (40, 90, 230), (60, 190, 90))

DISC_DIAMETER = 16  # pixels at 64x64, scaled with the frame


def disc_box(image_size: int) -> int:
    """The side in pixels of a disc's bounding box (its diameter): 16 at 64, scaled."""
    return round(DISC_DIAMETER * image_size / REFERENCE_IMAGE_SIZE)


def background(size: int) -> np.ndarray:
    """The example video's fixed background, float64 (size, size, 3) in 0..255: grey-green,
    a soft diagonal gradient and faint stripes (``examples/make_example_video.py`` draws it)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    base = 70 + 30 * (x + y) / (2 * size) + 6 * np.sin(x / 3.0) * np.sin(y / 5.0)
    return np.stack([base * 0.9, base * 1.05, base * 0.85], axis=-1)


class MovingDiscs(MovingBoxes):
    """Seeded, on-the-fly generator of occluding discs over a background.

    Per sequence, independently, each disc's box starts uniformly in the frame (or its arena)
    and moves at constant ``speed`` in a uniformly random heading, bouncing as Moving MNIST's
    digits do. Frames are composited back to front over the background:
    ``x = bg * (1 - c_N) + colour_N * c_N``, then disc N - 1 over that, and so on, where
    ``c_n`` is disc n's anti-aliased coverage.

    Args:
        image_size: frame height and width in pixels (≥ 16).
        num_discs: discs per sequence, 1 to 3.
        seq_len: frames per sequence (≥ 1).
        speed: pixels per frame at 64×64 (≥ 0), scaled with ``image_size / 64``.
        arena: ``"box"`` or ``"circle"`` (as Moving MNIST's).
        colours: ``"distinct"`` (orange, blue, green) or ``"same"`` (all orange).
        device: where batches are generated.
        seed: seed of the generator's random stream (``state_dict`` saves its position).
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        num_discs: int = 2,
        seq_len: int = 5,
        speed: float = 3.6,
        arena: str = "box",
        colours: str = "distinct",
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        if not 1 <= num_discs <= 3:
            raise ValueError(f"num_discs must be 1, 2 or 3, got {num_discs}")
        super().__init__(
            image_size=image_size, box=disc_box(image_size), num_objects=num_discs,
            seq_len=seq_len, speed=speed, arena=arena, device=device, seed=seed,
        )  # fmt: skip
        if colours not in DISC_COLOURS:
            raise ValueError(f"colours must be one of {', '.join(DISC_COLOURS)}, got {colours!r}")
        palette = (
            DISC_PALETTE[:num_discs] if colours == "distinct" else DISC_PALETTE[:1] * num_discs
        )
        rgb = torch.tensor(palette, dtype=torch.float32) / 255.0
        self._colours = rgb.to(self.device)[:, :, None, None]  # (N, 3, 1, 1)
        bg = torch.from_numpy(background(image_size) / 255.0).permute(2, 0, 1).float()
        self._background = bg.to(self.device)  # (3, H, W)
        # pixel centres along x and along y
        self._pixel = torch.arange(image_size, dtype=torch.float32, device=self.device) + 0.5

    def sample(self, batch_size: int) -> MovingMNISTBatch:
        """``batch_size`` new sequences: frames (B, T, 3, H, W), positions and velocities of
        each disc's box (B, T, N, 2), labels = the disc's depth rank (0 in front), and
        ``masks`` (B, T, N, H, W): the share of each pixel where disc n is seen."""
        positions, velocities = self.trajectories(batch_size)
        frames, masks = self.render(positions)
        labels = torch.arange(self.num_objects, device=self.device).expand(batch_size, -1)
        return MovingMNISTBatch(frames, positions, velocities, labels, masks=masks)

    def render(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames (B, T, 3, H, W) and visible masks (B, T, N, H, W) of discs whose boxes' top-left
        corners are ``positions`` (B, T, N, 2) as (x, y)."""
        radius = self.box / 2
        centre = positions + radius  # (B, T, N, 2)
        dx = self._pixel - centre[..., 0, None]  # (B, T, N, W)
        dy = self._pixel - centre[..., 1, None]  # (B, T, N, H)
        distance = torch.sqrt(dy[..., :, None] ** 2 + dx[..., None, :] ** 2)  # (B, T, N, H, W)
        cover = (radius + 0.5 - distance).clamp(0.0, 1.0)
        B, T, N = positions.shape[:3]
        frames = self._background.expand(B, T, -1, -1, -1)
        unseen = torch.ones_like(cover[:, :, 0])  # (B, T, H, W): not yet hidden by a disc in front
        masks = torch.empty_like(cover)
        for n in reversed(range(N)):  # back to front
            c = cover[:, :, n, None]  # (B, T, 1, H, W)
            frames = frames * (1 - c) + self._colours[n] * c
        for n in range(N):  # front to back: what of disc n the discs in front leave visible
            masks[:, :, n] = cover[:, :, n] * unseen
            unseen = unseen * (1 - cover[:, :, n])
        return frames.contiguous(), masks


def make_disc_test_set(
    num_sequences: int, *, seed: int, batch_size: int = 256, **moving_discs_kwargs
) -> MovingMNISTBatch:
    """A frozen disc test set: ``num_sequences`` sequences generated on CPU from ``seed``
    (``moving_discs_kwargs`` go to ``MovingDiscs``); move it with ``.to(device)``."""
    generator = MovingDiscs(device="cpu", seed=seed, **moving_discs_kwargs)
    return generator.frozen(num_sequences, batch_size)


def disc_options(config, seq_len: int | None = None) -> dict:
    """``MovingDiscs`` keyword arguments of a ``TrainConfig`` with ``scene="discs"``: its
    ``num_digits``, ``digit_speed`` and ``arena`` apply to the discs."""
    return dict(
        image_size=config.image_size, num_discs=config.num_digits,
        seq_len=seq_len or config.seq_len, speed=config.digit_speed, arena=config.arena,
        colours=config.disc_colours,
    )  # fmt: skip
