"""Figure 3 and friends: what each factor draws, as image grids and GIFs.

- ``independent_generations``: filter a sequence with posterior means, hold every factor at
  its step-1 value and let only factor k follow its posterior; decode. Whatever moves in the
  frames is what factor k represents (one digit, if the factors became objects).
- ``reconstructions``: decoded posterior means of every step.
- ``prior_samples``: z_1 ~ N(0, I), z_t ~ p(z_t | z_{t-1}); decoded.
- ``factor_rollouts``: hold every factor at its step-1 posterior mean and roll only factor k
  forward with its own transition (a sample per step): the motion the prior gives factor k.
- ``factor_layers``: for a per-factor decoder (``--decoder additive|composite``), what each
  factor draws in the reconstructions: its layer, and its mask for ``composite``.

Arrays are (rows, T, C, H, W) in [0, 1]. ``save_grid`` writes one row per sequence and one
column per step; ``save_gif`` one frame per step with the sequences side by side.
``save_tracks`` and ``save_track_gif`` draw factors' tracks (centres per frame) over the frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from ..model import DVIP
from .posterior import filter_sequences

PAD = 2


def _decode(dvip: DVIP, z: torch.Tensor, appearance: torch.Tensor | None = None) -> torch.Tensor:
    """Decode latents (n, ..., z_dim) to frames (n, ..., C, H, W) on CPU; ``appearance``
    (n, K, A): each sequence's, for a model that has one."""
    lead = z.shape[:-1]
    images = dvip.render(z.reshape(-1, dvip.z_dim), _per_row(appearance, lead.numel()))
    return images.view(*lead, *images.shape[1:]).cpu()


def _per_row(appearance: torch.Tensor | None, rows: int) -> torch.Tensor | None:
    """Each sequence's appearance (n, K, A) repeated for its rows of latents, n first."""
    return None if appearance is None else appearance.repeat_interleave(rows // len(appearance), 0)


@torch.no_grad()
def independent_generations(
    dvip: DVIP, frames: torch.Tensor, groups: list[np.ndarray]
) -> torch.Tensor:
    """(K, n, T, C, H, W): per unit group k, frames where only group k follows the posterior."""
    posterior = filter_sequences(dvip, frames, use_mean=True)
    z = posterior.means.flatten(2)  # (n, T, D)
    out = []
    for units in groups:
        held = z[:, :1].expand_as(z).clone()
        index = torch.as_tensor(units, device=z.device)
        held[..., index] = z[..., index]
        out.append(_decode(dvip, held, posterior.appearance))
    return torch.stack(out)


@torch.no_grad()
def reconstructions(dvip: DVIP, frames: torch.Tensor) -> torch.Tensor:
    """(n, T, C, H, W): decoded posterior means, filtering with means."""
    posterior = filter_sequences(dvip, frames, use_mean=True)
    return _decode(dvip, posterior.means.flatten(2), posterior.appearance)


@torch.no_grad()
def prior_samples(dvip: DVIP, n: int, steps: int, device: torch.device | str = "cpu"):
    """(n, T, C, H, W): decoded samples of the prior p(z_{1:T})."""
    like = torch.zeros(1, device=device)
    z = dvip.transition.initial(n, like).sample()
    zs = [z]
    for _ in range(steps - 1):
        z = dvip.transition(z).sample()
        zs.append(z)
    appearance = dvip.appearance_prior(like.expand(n)).sample() if dvip.appearance_dim else None
    return _decode(dvip, torch.stack(zs, 1).flatten(2), appearance)


@torch.no_grad()
def factor_rollouts(dvip: DVIP, frames: torch.Tensor) -> torch.Tensor:
    """(K, n, T, C, H, W): factor k rolled forward by the prior, the others held at step 1."""
    posterior = filter_sequences(dvip, frames[:, :1], use_mean=True)
    z1 = posterior.means[:, 0]  # (n, K, d)
    out = []
    for k in range(dvip.num_factors):
        z, zs = z1.clone(), [z1]
        for _ in range(frames.shape[1] - 1):
            z = z.clone()
            z[:, k] = dvip.transition(z).sample()[:, k]  # factor k's own prediction
            zs.append(z)
        out.append(_decode(dvip, torch.stack(zs, 1).flatten(2), posterior.appearance))
    return torch.stack(out)


@torch.no_grad()
def factor_layers(dvip: DVIP, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"layer_factor{k}": (n, T, C, H, W), "mask_factor{k}": (n, T, 1, H, W) (composite
    only)}: the decoder's ``parts`` of the posterior means; empty for the paper's decoder."""
    if dvip.decoder.num_parts == 1:  # the paper's draws the factors together
        return {}
    posterior = filter_sequences(dvip, frames, use_mean=True)
    z = posterior.means.flatten(2)  # (n, T, D)
    n, T = z.shape[:2]
    parts = dvip.parts(z.reshape(n * T, -1), _per_row(posterior.appearance, n * T))
    out = {}
    for name in ("layers", "masks"):
        if name in parts:
            videos = parts[name].cpu().view(n, T, *parts[name].shape[1:]).transpose(0, 2)
            out.update({f"{name[:-1]}_factor{k}": v.transpose(0, 1) for k, v in enumerate(videos)})
    return out


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """Images (..., C, H, W) as three channels: 1 is grey, 2 gets an empty blue channel."""
    C = images.shape[-3]
    if C == 1:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    if C == 2:
        return torch.cat([images, torch.zeros_like(images[..., :1, :, :])], -3)
    return images[..., :3, :, :]


def scale_for(image_size: int) -> int:
    """Nearest-neighbour upscaling so that a frame is drawn at least 64 pixels wide."""
    return max(1, 64 // image_size)


def _to_pil(grid: torch.Tensor, scale: int) -> Image.Image:
    array = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(array)
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def grid_size(rows: int, cols: int, image_size: int) -> tuple[int, int]:
    """(width, height) in pixels of ``save_grid``'s image."""
    scale = scale_for(image_size)
    return (cols * (image_size + PAD) + PAD) * scale, (rows * (image_size + PAD) + PAD) * scale


def save_grid(videos: torch.Tensor, path: Path) -> None:
    """PNG of videos (rows, T, C, H, W): one row per video, one column per step."""
    rows, T = videos.shape[:2]
    grid = make_grid(_rgb(videos.flatten(0, 1)), nrow=T, padding=PAD, pad_value=1.0)
    _to_pil(grid, scale_for(videos.shape[-1])).save(path)


def save_gif(videos: torch.Tensor, path: Path, ms_per_frame: int = 250) -> None:
    """Looping GIF of videos (rows, T, C, H, W): frame t shows every video side by side, with a
    progress bar in the bottom margin (which also keeps GIF writers from merging still frames)."""
    rows, T = videos.shape[:2]
    scale = scale_for(videos.shape[-1])
    frames = []
    for t in range(T):
        grid = make_grid(_rgb(videos[:, t]), nrow=rows, padding=PAD, pad_value=1.0)
        grid[:, -PAD:, : round(grid.shape[-1] * (t + 1) / T)] = 0.0
        frames.append(_to_pil(grid, scale))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)


TRACK_COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
    (127, 127, 127),
]


def track_colour(k: int) -> tuple[int, int, int]:
    """Factor k's colour in the track figures (tab10, repeating)."""
    return TRACK_COLOURS[k % len(TRACK_COLOURS)]


def _track_scale(image_size: int) -> int:
    return max(1, 128 // image_size)  # frames at least 128 pixels wide: room for a line


def _draw_trail(
    draw, track: np.ndarray, t: int, origin: tuple[int, int], scale: int, colour
) -> None:
    """Track (T, 2) as (x, y) pixels of a frame drawn at ``origin`` (grid pixels, before
    scaling): a line through steps 0..t and a dot at t; absent steps (NaN) break the line."""
    points = [None if not np.isfinite(p).all() else
              ((origin[0] + p[0] + 0.5) * scale, (origin[1] + p[1] + 0.5) * scale)
              for p in track[: t + 1]]  # fmt: skip
    for a, b in zip(points[:-1], points[1:]):
        if a is not None and b is not None:
            draw.line([a, b], fill=colour, width=max(1, scale // 2))
    if points[-1] is not None:
        r = max(2, scale)
        x, y = points[-1]
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=max(1, scale // 2))


def save_tracks(frames: torch.Tensor, tracks: np.ndarray, factors: list[int], path: Path) -> None:
    """PNG of frames (rows, T, C, H, W), one row per sequence and one column per step, with the
    track (rows, T, K, 2) of each factor in ``factors`` drawn over them in its colour: its path
    so far and a circle where it is."""
    rows, T, _, S, _ = frames.shape
    scale = _track_scale(S)
    grid = make_grid(_rgb(frames.flatten(0, 1)), nrow=T, padding=PAD, pad_value=1.0)
    image = _to_pil(grid, scale)
    draw = ImageDraw.Draw(image)
    for r in range(rows):
        for t in range(T):
            origin = (PAD + t * (S + PAD), PAD + r * (S + PAD))
            for k in factors:
                _draw_trail(draw, tracks[r, :, k], t, origin, scale, track_colour(k))
    image.save(path)


def save_track_gif(
    frames: torch.Tensor, tracks: np.ndarray, k: int, path: Path, ms_per_frame: int = 250
) -> None:
    """Looping GIF of frames (rows, T, C, H, W), the sequences side by side, with factor k's
    track (rows, T, K, 2) drawn over them as it goes."""
    rows, T, _, S, _ = frames.shape
    scale = _track_scale(S)
    images = []
    for t in range(T):
        grid = make_grid(_rgb(frames[:, t]), nrow=rows, padding=PAD, pad_value=1.0)
        grid[:, -PAD:, : round(grid.shape[-1] * (t + 1) / T)] = 0.0
        image = _to_pil(grid, scale)
        draw = ImageDraw.Draw(image)
        for r in range(rows):
            _draw_trail(
                draw, tracks[r, :, k], t, (PAD + r * (S + PAD), PAD), scale, track_colour(k)
            )
        images.append(image)
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
