"""Per-factor decoders, beyond the paper (docs/model.md, "Per-factor decoders"): each block
of d latent units is drawn by its own DCGAN generator, and the blocks' drawings are added
(:class:`AdditiveDecoder`) or composited through masks (:class:`CompositeDecoder`). Only the
mean of p(x_t | z_t) changes; the sites, plates and bound of the model do not.

Every generator's output starts near black (``BLACK``, about the mean pixel of Moving MNIST),
so K layers do not start as K x 0.5.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from .config import BACKGROUNDS, DECODERS
from .networks import Decoder, FrameDecoder, conv_widths, full_precision
from .tricks import block_of

BLACK = 0.02  # the mean a per-factor decoder starts at


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class FactorGenerators(nn.Module):
    """K DCGAN generators, one per block of d latent units:
    z (N, K d) -> outputs (N, K, C_out, H, W), block k's output a function of block k alone.

    Each generator has the structure of :class:`Decoder` with z_dim = d (a per-factor Linear
    as a 1x1 convolution, transposed convolutions with BatchNorm + ReLU) and no output
    non-linearity. They are stored as grouped convolutions (groups=K, block k's weights the
    k-th slice of each layer) but run one generator at a time: PyTorch's CPU kernels for
    grouped transposed convolutions are its slow path (docs/performance.md), and a block can
    then be rendered alone. ``width`` is each generator's channel multiplier.
    """

    def __init__(
        self, num_parts: int, part_dim: int, out_channels: int, image_size: int, width: int = 64
    ):
        super().__init__()
        self.num_parts, self.part_dim, self.out_channels = num_parts, part_dim, out_channels
        g = num_parts  # convolution groups: one per generator
        widths = conv_widths(image_size, width)[::-1]
        layers: list[nn.Module] = [
            nn.Conv2d(g * part_dim, g * part_dim, 1, groups=g),  # Decoder's Linear(z_dim, z_dim)
            nn.ReLU(),
            nn.ConvTranspose2d(g * part_dim, g * widths[0], 4, stride=1, padding=0, groups=g),
            nn.BatchNorm2d(g * widths[0]),
            nn.ReLU(),
        ]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [
                nn.ConvTranspose2d(g * c_in, g * c_out, 4, stride=2, padding=1, groups=g),
                nn.BatchNorm2d(g * c_out),
                nn.ReLU(),
            ]
        self.last = nn.ConvTranspose2d(
            g * widths[-1], g * out_channels, 4, stride=2, padding=1, groups=g
        )
        self.deconv = nn.Sequential(*layers, self.last)

    def set_output_bias(self, value: torch.Tensor) -> None:
        """Start every generator's output at ``value`` (out_channels,) plus the weights' noise."""
        with torch.no_grad():
            self.last.bias.copy_(value.repeat(self.last.bias.numel() // len(value)))

    def forward(self, z: torch.Tensor, blocks: Sequence[int] | None = None) -> torch.Tensor:
        """Outputs (N, len(blocks), C_out, H, W) of the given blocks (default all K), each from
        its own d units of z (N, K d); the other blocks' units are not read."""
        N, K, d = z.shape[0], self.num_parts, self.part_dim
        blocks = range(K) if blocks is None else blocks
        parts = z.view(N, K, d)[:, list(blocks)]  # (N, n, d)
        for norm in self.deconv:  # counted once a pass, as one grouped layer would
            if isinstance(norm, nn.BatchNorm2d) and norm.training and norm.track_running_stats:
                norm.num_batches_tracked.add_(1)
        outs = []
        for j, k in enumerate(blocks):
            h = parts[:, j].reshape(N, d, 1, 1)
            for layer in self.deconv:
                h = block_of(layer, h, k, K)
            outs.append(h)
        return full_precision(torch.stack(outs, 1))


class PerFactorDecoder(FrameDecoder):
    """A decoder in which block k of z is drawn by its own generator ``generators`` alone, over
    an optional learned static ``background`` that no block draws (``background="static"``).
    Each generator outputs C colour channels and ``scope_channels`` mask logits, starting near
    black (:meth:`colour_start`) at mask logit 0. The explaining-away guide (``posterior.py``)
    renders blocks through ``generators`` and reads ``explained``."""

    scope_channels: int  # mask logits per generator: what an explaining-away encoder also reads

    def __init__(self, channels: int, image_size: int, num_parts: int, part_dim: int,
                 width: int = 64, background: str = "none"):  # fmt: skip
        super().__init__()
        self.z_dim, self.num_parts, self.channels = num_parts * part_dim, num_parts, channels
        out = channels + self.scope_channels  # colour logits, then the mask logit
        self.generators = FactorGenerators(num_parts, part_dim, out, image_size, width)
        start = [self.colour_start(num_parts)] * channels + [0.0] * self.scope_channels
        self.generators.set_output_bias(torch.tensor(start))
        if background not in BACKGROUNDS:
            raise ValueError(
                f"background: must be one of {', '.join(BACKGROUNDS)}, got {background!r}"
            )
        self.background = None
        if background == "static":  # a learned image, near black at mask logit 0
            value = torch.full((out, image_size, image_size), _logit(BLACK))
            value[channels:] = 0.0
            self.background = nn.Parameter(value)

    @staticmethod
    @abstractmethod
    def colour_start(num_parts: int) -> float:
        """The colour logit every generator starts at, for a mean near ``BLACK``."""

    @abstractmethod
    def explained(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the blocks whose generator ``outputs`` (N, k, C_out, H, W) are given draw, with
        the static background: (N, C, H, W), and the share of each pixel they leave unclaimed
        (N, 1, H, W), or None where the decoder has no masks."""


class AdditiveDecoder(PerFactorDecoder):
    """Additive decoder (Lachapelle et al. 2023): each factor renders a layer on its own.

    mean = sum_k sigmoid(g_k(z^k)), the layers add exactly (not clipped: a clip zeroes the
    gradient of every pixel above 1, and the Gaussian likelihood already pays for a mean
    outside [0, 1]). ``background="static"`` adds a learned image b (C, H, W) that no factor
    draws: sigmoid(b) is one more layer. z (N, K d) -> mean (N, C, H, W).
    """

    scope_channels = 0

    @staticmethod
    def colour_start(num_parts: int) -> float:
        return _logit(BLACK / num_parts)  # K layers add up to about BLACK

    def parts(self, z: torch.Tensor, blocks: Sequence[int] | None = None) -> dict:
        """{"layers": (N, K, C, H, W)}: what each factor draws, sigmoid(g_k(z^k)); with
        ``blocks``, only theirs, (N, len(blocks), C, H, W). With a static background also
        "background": its layer sigmoid(b) (1, 1, C, H, W)."""
        out = {"layers": torch.sigmoid(self.generators(z, blocks))}
        if self.background is not None:
            out["background"] = torch.sigmoid(self.background)[None, None]
        return out

    def explained(self, outputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        """The sum of the given blocks' sigmoid layers, added in block order, and the static
        background's; no mask."""
        layers = torch.sigmoid(outputs)
        drawn = layers[:, 0] if layers.shape[1] else layers.new_zeros(layers[:, :1].sum(1).shape)
        for j in range(1, layers.shape[1]):
            drawn = drawn + layers[:, j]
        if self.background is not None:
            drawn = drawn + torch.sigmoid(self.background)
        return drawn, None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        mean = torch.sigmoid(self.generators(z)).sum(1)  # (N, C, H, W)
        return mean if self.background is None else mean + torch.sigmoid(self.background)


class CompositeDecoder(PerFactorDecoder):
    """Composited decoder (MONet/IODINE-style): each factor renders RGB and a mask logit;
    masks are normalised over factors, so every pixel is shared out among them.

    (rgb_k, a_k) = g_k(z^k); m = softmax_k(a); mean = sum_k m_k sigmoid(rgb_k), in [0, 1].
    Masks start near 1/K. ``background="static"`` adds a slot that no factor draws: a learned
    colour logit image b (C, H, W) and mask logit image a_0 (1, H, W) in the softmax beside
    the factors' (a_0 starts at 0). z (N, K d) -> mean (N, C, H, W).
    """

    scope_channels = 1

    @staticmethod
    def colour_start(num_parts: int) -> float:
        return _logit(BLACK)  # the masks share each pixel out

    def _slots(self, outputs: torch.Tensor) -> torch.Tensor:
        """The generators' outputs (N, K, C + 1, H, W), the static background's slot first."""
        if self.background is None:
            return outputs
        return torch.cat([self.background.expand(outputs.shape[0], 1, *self.background.shape),
                          outputs], 1)  # fmt: skip

    def parts(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"layers": m_k sigmoid(rgb_k) (N, K, C, H, W), summing to the mean;
        "masks": m_k (N, K, 1, H, W), summing to 1 over k}. With a static background the
        factors' layers and masks leave out its slot, "background": its layer (N, 1, C, H, W)
        and "background_mask" (N, 1, 1, H, W); layers and masks then sum with it."""
        slots = self._slots(self.generators(z))  # (N, S, C + 1, H, W)
        masks = torch.softmax(slots[:, :, self.channels :], dim=1)
        layers = masks * torch.sigmoid(slots[:, :, : self.channels])
        if self.background is None:
            return {"layers": layers, "masks": masks}
        return {"layers": layers[:, 1:], "masks": masks[:, 1:], "background": layers[:, :1],
                "background_mask": masks[:, :1]}  # fmt: skip

    def visible_changes(self, z: torch.Tensor) -> torch.Tensor:
        """How far what each factor shows is from the background it covers (N, K, H, W): Σ over
        channels of |m_k sigmoid(rgb_k) − m_k background| (black where there is none)."""
        out = self.parts(z)
        if self.background is None:
            return out["layers"].abs().sum(2)
        colour = torch.sigmoid(self.background[: self.channels])
        return (out["layers"] - out["masks"] * colour).abs().sum(2)

    def explained(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The given blocks composited beside a rest slot, which is the static background's
        (its colour and mask logit) or else black with mask logit 0 (where the masks start);
        the rest's share is the pixels no given block claims (MONet's scope)."""
        N = outputs.shape[0]
        if self.background is None:
            rest = outputs.new_zeros(N, 1, self.channels + 1, *outputs.shape[-2:])
            rest_colour = rest[:, :, : self.channels]
        else:
            rest = self.background.expand(N, 1, *self.background.shape)
            rest_colour = torch.sigmoid(rest[:, :, : self.channels])
        masks = torch.softmax(torch.cat([rest, outputs], 1)[:, :, self.channels :], dim=1)
        colours = torch.cat([rest_colour, torch.sigmoid(outputs[:, :, : self.channels])], 1)
        return (masks * colours).sum(1), masks[:, 0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.parts(z)
        mean = out["layers"].sum(1)
        return mean if self.background is None else mean + out["background"][:, 0]


def make_decoder(
    kind: str,
    channels: int,
    image_size: int,
    num_parts: int,
    part_dim: int,
    width: int = 64,
    background: str = "none",
) -> FrameDecoder:
    """The decoder named ``kind`` for latents of ``num_parts`` blocks of ``part_dim`` units:
    the paper's :class:`Decoder` (which sees the blocks together and takes no other option),
    an :class:`AdditiveDecoder` or a :class:`CompositeDecoder`."""
    if kind == "paper":
        if background != "none":
            raise ValueError("background: applies to --decoder additive or composite only")
        return Decoder(channels, image_size, num_parts * part_dim, width)
    if kind == "additive":
        return AdditiveDecoder(channels, image_size, num_parts, part_dim, width, background)
    if kind == "composite":
        return CompositeDecoder(channels, image_size, num_parts, part_dim, width, background)
    raise ValueError(f"decoder: must be one of {', '.join(DECODERS)}, got {kind!r}")
