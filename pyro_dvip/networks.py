"""The networks of Appendix A: DCGAN encoder and decoder, the posterior head, and the
factored transition MLP evaluated for all K factors in one batched operation; and the two
interfaces that options beyond the paper implement again: :class:`FrameDecoder` (the mean of
p(x_t | z_t); ``decoders.py``) and :class:`Posterior` (q(z_t | z_{t-1}, x_t); ``posterior.py``).

Sizes follow ``shared/paper/original-code-notes.md``; ``width`` scales every convolution
(64 is the paper's) and ``image_size`` may be any power of two from 16 to 256 (64 is the
paper's; 32 keeps tests and CPU runs small).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import nn

from .config import SUPPORTED_IMAGE_SIZES

LEAKY_SLOPE = 0.2  # DCGAN's discriminator slope
# The transition's log-variance is clamped to [-20, 20] (a departure, docs/model.md): far
# outside what training visits, so trained numbers are unchanged, but rolling the prior
# forward from N(0, I) can no longer overflow exp() into inf and NaN.
TRANSITION_LOGVAR_BOUND = 20.0


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """Network outputs that parameterise distributions leave half precision (under autocast)
    as float32, so that log-densities and KLs are computed in float32 or better."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def check_image_size(image_size: int) -> None:
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"image_size must be one of {', '.join(map(str, SUPPORTED_IMAGE_SIZES))} "
            f"(the DCGAN networks halve it down to 4x4), got {image_size}"
        )


def conv_widths(image_size: int, width: int) -> list[int]:
    """Channels of the stride-2 convolutions, input side first: 64x64 -> [w, 2w, 4w, 8w]."""
    check_image_size(image_size)
    num_halvings = int(math.log2(image_size)) - 2  # down to 4x4
    return [width * min(2**i, 8) for i in range(num_halvings)]


class Encoder(nn.Module):
    """DCGAN discriminator: frames (N, C, H, W) -> features (N, z_dim).

    Conv 4x4/2 + BatchNorm + LeakyReLU down to 4x4, a 4x4 conv to z_dim at 1x1 + LeakyReLU,
    then Linear(z_dim, z_dim) with no activation, as in the authors' code; ``linear_act`` adds
    a LeakyReLU after it (every run saved before this option existed, and so the runs in
    docs/results.md). Either way the parameters are the same, so a checkpoint loads into both.
    """

    def __init__(
        self, channels: int, image_size: int, z_dim: int, width: int = 64, linear_act=False
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in conv_widths(image_size, width):
            layers += [
                nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(LEAKY_SLOPE),
            ]
            c_in = c_out
        layers += [nn.Conv2d(c_in, z_dim, 4, stride=1, padding=0), nn.LeakyReLU(LEAKY_SLOPE)]
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(z_dim, z_dim)
        self.act = nn.LeakyReLU(LEAKY_SLOPE) if linear_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(self.conv(x).flatten(1)))


class FrameDecoder(nn.Module, ABC):
    """The mean of p(x_t | z_t): z (N, z_dim) -> (N, C, H, W), the model's g.

    ``num_parts`` blocks of z are drawn each on its own (1: the whole z together, as the
    paper's decoder); ``parts(z)`` says what each block draws, for the evaluation. A decoder
    with ``appearance_dim > 0`` also reads each block's appearance, fixed for the sequence:
    ``forward(z, appearance)`` and ``parts(z, appearance)``, appearance (N, num_parts,
    appearance_dim) (``glimpse.py``).
    """

    z_dim: int
    num_parts: int = 1
    appearance_dim: int = 0

    @abstractmethod
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of the frames, (N, C, H, W), from latents z (N, z_dim)."""

    def parts(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"layers": (N, K, C, H, W), ...}: what each block draws; empty when the blocks are
        drawn together."""
        return {}


class Decoder(FrameDecoder):
    """DCGAN generator: z (N, z_dim) -> pixel means (N, C, H, W) in [0, 1].

    Linear(z_dim, z_dim) + ReLU, a 4x4 transposed conv to 4x4, transposed convs 4x4/2 with
    BatchNorm + ReLU up to half the image size, a last one to C channels and a sigmoid.
    """

    def __init__(self, channels: int, image_size: int, z_dim: int, width: int = 64):
        super().__init__()
        widths = conv_widths(image_size, width)[::-1]  # 64x64: [8w, 4w, 2w, w]
        self.z_dim = z_dim
        self.fc = nn.Sequential(nn.Linear(z_dim, z_dim), nn.ReLU())
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, widths[0], 4, stride=1, padding=0),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        ]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, stride=2, padding=1), nn.Sigmoid()]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return full_precision(self.deconv(self.fc(z).view(-1, self.z_dim, 1, 1)))


class Posterior(nn.Module, ABC):
    """q(z_t | z_{t-1}, x_t) of Appendix A at one step, as the guide calls it.

    A posterior that also reads what it has seen of each factor before t (the what/where
    guide, ``glimpse.py``) keeps it in ``seen``: ``start(x)`` before step 1, ``see(seen, z_t,
    x_t)`` after each step, and ``appearance(seen)`` is q(a | x_{1:T}, z_{1:T}) at the end. The
    paper's keeps nothing (None). ``reads_features``: whether ``step`` reads e(x_t)."""

    reads_features = True

    @abstractmethod
    def step(
        self,
        features: torch.Tensor,
        x_t: torch.Tensor,
        prior: tuple[torch.Tensor, torch.Tensor],
        decoder: FrameDecoder,
        seen=None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loc and log-variance (B, z_dim) from the encoder's features e(x_t) (B, z_dim), the
        frame x_t (B, C, H, W), the prior's predicted loc and log-variance at z_{t-1}
        (B, z_dim each; zeros at t = 1), the model's decoder and what was seen before t."""

    def start(self, x: torch.Tensor):
        return None

    def see(self, seen, z: torch.Tensor, x_t: torch.Tensor):
        return seen

    def appearance(self, seen) -> tuple[torch.Tensor, torch.Tensor]:
        """loc and scale (B, parts, A) of q(a | x_{1:T}, z_{1:T})."""
        raise NotImplementedError(f"{type(self).__name__} infers no appearance")


class PosteriorHead(Posterior):
    """Combines image features with the prior's prediction (Appendix A, as in the authors' code).

    [features, prior loc, prior log-variance] (N, 3 z_dim) -> Linear + LeakyReLU -> loc and
    log-variance heads (N, z_dim) each. The paper's posterior: ``step`` reads e(x_t) only.
    """

    def __init__(self, z_dim: int):
        super().__init__()
        self.combine = nn.Linear(3 * z_dim, z_dim)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.loc = nn.Linear(z_dim, z_dim)
        self.logvar = nn.Linear(z_dim, z_dim)

    def forward(
        self, features: torch.Tensor, prior_loc: torch.Tensor, prior_logvar: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.combine(torch.cat([features, prior_loc, prior_logvar], dim=-1)))
        return full_precision(self.loc(h)), full_precision(self.logvar(h))

    def step(self, features, x_t, prior, decoder, seen=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self(features, *prior)


class FactoredLinear(nn.Module):
    """K independent linear layers as one batched matmul: (K, N, n_in) -> (K, N, n_out).

    Weights are stacked per factor, so factor k's output depends only on factor k's input.
    Initialised like ``nn.Linear`` (uniform in +-1/sqrt(n_in)), independently per factor.
    """

    def __init__(self, num_factors: int, n_in: int, n_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(num_factors, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_factors, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class FactoredMLP(nn.Module):
    """K transition MLPs (Table 1, Appendix A), one per factor, computed together.

    Per factor: Linear(d, hidden) + SELU, ``num_hidden_layers`` x (Linear(hidden, hidden) + SELU),
    then a Linear(hidden, 2d) head split into mean and log-variance, the log-variance clamped
    to +-``TRANSITION_LOGVAR_BOUND``.
    z_prev (B, K, d) -> loc (B, K, d), logvar (B, K, d).
    """

    def __init__(
        self, num_factors: int, factor_dim: int, hidden: int = 128, num_hidden_layers: int = 3
    ):
        super().__init__()
        dims = [factor_dim] + [hidden] * (num_hidden_layers + 1)
        self.layers = nn.ModuleList(
            FactoredLinear(num_factors, n_in, n_out) for n_in, n_out in zip(dims, dims[1:])
        )
        self.head = FactoredLinear(num_factors, hidden, 2 * factor_dim)
        self.act = nn.SELU()

    def forward(self, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = z_prev.transpose(0, 1)  # (K, B, d): factors lead so each bmm slice is one factor
        for layer in self.layers:
            h = self.act(layer(h))
        loc, logvar = full_precision(self.head(h)).transpose(0, 1).chunk(2, dim=-1)
        return loc, logvar.clamp(-TRANSITION_LOGVAR_BOUND, TRANSITION_LOGVAR_BOUND)
