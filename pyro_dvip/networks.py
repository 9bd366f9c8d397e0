"""The networks of Appendix A: DCGAN encoder and decoder, the posterior head, and the
factored transition MLP evaluated for all K factors in one batched operation.

Sizes follow ``shared/paper/original-code-notes.md``; ``width`` scales every convolution
(64 is the paper's) and ``image_size`` may be any power of two from 16 to 256 (64 is the
paper's; 32 keeps tests and CPU runs small).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_IMAGE_SIZES = (16, 32, 64, 128, 256)
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


class Decoder(nn.Module):
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


class PosteriorHead(nn.Module):
    """Combines image features with the prior's prediction (Appendix A, as in the authors' code).

    [features, prior loc, prior log-variance] (N, 3 z_dim) -> Linear + LeakyReLU -> loc and
    log-variance heads (N, z_dim) each.
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


# Per-factor decoders: options beyond the paper (docs/model.md, "Per-factor decoders").
DECODERS = ("paper", "additive", "composite")
DECODER_WEIGHTS = ("shared", "per-factor")
DECODER_SUMS = ("sigmoids", "logits")
DECODER_INITS = ("grey", "black")
BACKGROUNDS = ("none", "static")  # per-factor decoders: no background, or a learned static one
BLACK = 0.02  # the mean a "black" decoder starts at: about the mean pixel of Moving MNIST


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class FactorGenerators(nn.Module):
    """K DCGAN generators, one per block of d latent units:
    z (N, K d) -> outputs (N, K, C_out, H, W), block k's output a function of block k alone.

    Each generator has the structure of :class:`Decoder` with z_dim = d (a per-factor Linear
    as a 1x1 convolution, transposed convolutions with BatchNorm + ReLU) and no output
    non-linearity. ``shared``: one generator applied to the N K blocks in one pass; otherwise
    one per factor, stored as grouped convolutions (groups=K, block k's weights the k-th
    slice of each layer) but run one generator at a time: PyTorch's CPU kernels for grouped
    transposed convolutions are its slow path (docs/performance.md), and a block can then be
    rendered alone. ``width`` is each generator's channel multiplier.
    """

    def __init__(
        self,
        num_parts: int,
        part_dim: int,
        out_channels: int,
        image_size: int,
        width: int = 64,
        shared: bool = True,
    ):
        super().__init__()
        self.num_parts, self.part_dim, self.out_channels = num_parts, part_dim, out_channels
        self.shared = shared
        g = 1 if shared else num_parts  # convolution groups: one per generator
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
        n = parts.shape[1]
        if self.shared:  # row m n + j is block blocks[j] of frame m
            out = self.deconv(parts.reshape(N * n, d, 1, 1))  # (N n, C_out, H, W)
            return full_precision(out.reshape(N, n, self.out_channels, *out.shape[-2:]))
        for norm in self.deconv:  # counted once a pass, as one grouped layer would
            if isinstance(norm, nn.BatchNorm2d) and norm.training and norm.track_running_stats:
                norm.num_batches_tracked.add_(1)
        outs = []
        for j, k in enumerate(blocks):
            h = parts[:, j].reshape(N, d, 1, 1)
            for layer in self.deconv:
                h = _block_of(layer, h, k, K)
            outs.append(h)
        return full_precision(torch.stack(outs, 1))


class _TransposedConv(torch.autograd.Function):
    """F.conv_transpose2d (no output padding or dilation, one group) with its backward pass
    written as the convolutions it is the adjoint of: the input's gradient is conv2d(g, w)
    and the weight's is conv2d's weight gradient with g as input and x as output gradient.
    The same gradients as autograd's; on the CPU, oneDNN runs these 2-5x faster than the
    transposed convolution's own backward kernels (docs/performance.md). Forward mode (the
    object score's Jacobian) and vmap work as for F.conv_transpose2d: it is bilinear in x, w."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, stride, padding):
        return F.conv_transpose2d(x, weight, bias, stride, padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, ctx.stride, ctx.padding = inputs
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        # Under autocast the forward ran in grad's dtype: so do its adjoints, and each
        # gradient returns in its input's dtype, as autograd's own would.
        x_low, weight_low = x.to(grad.dtype), weight.to(grad.dtype)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight_low, None, ctx.stride, ctx.padding).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.ops.aten.convolution_backward(
                x_low, grad, weight_low, None, ctx.stride, ctx.padding, (1, 1), False, (0, 0),
                1, (False, True, False),
            )[1].to(weight.dtype)  # fmt: skip
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3)).to(ctx.bias_dtype)
        return grad_x, grad_weight, grad_bias, None, None

    @staticmethod
    def jvp(ctx, x_dot, weight_dot, bias_dot, *_):
        x, weight = ctx.saved_tensors
        out_dot = None
        for a, b in ((x_dot, weight), (x, weight_dot)):
            if a is not None and b is not None:
                term = F.conv_transpose2d(a, b, None, ctx.stride, ctx.padding)
                out_dot = term if out_dot is None else out_dot + term
        if bias_dot is not None:
            out_dot = (
                bias_dot.view(1, -1, 1, 1)
                if out_dot is None
                else out_dot + bias_dot.view(1, -1, 1, 1)
            )
        return out_dot


def _average_factor(norm: nn.BatchNorm2d) -> float:
    """The running-statistics update weight nn.BatchNorm2d uses (after counting the batch)."""
    if norm.momentum is not None:
        return norm.momentum
    return 1.0 / float(norm.num_batches_tracked) if norm.num_batches_tracked > 0 else 0.0


def _block_of(layer: nn.Module, h: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """Group ``k`` of a layer built with ``groups`` groups, applied to that group's input h:
    exactly the grouped layer's output channels for group k."""
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        c_out = layer.out_channels // groups
        bias = layer.bias[k * c_out : (k + 1) * c_out]
        if isinstance(layer, nn.ConvTranspose2d):  # weight (C_in, C_out / groups, kH, kW)
            c_in = layer.in_channels // groups
            weight = layer.weight[k * c_in : (k + 1) * c_in]
            return _TransposedConv.apply(h, weight, bias, layer.stride, layer.padding)
        weight = layer.weight[k * c_out : (k + 1) * c_out]  # (C_out, C_in / groups, kH, kW)
        return F.conv2d(h, weight, bias, layer.stride, layer.padding)
    if isinstance(layer, nn.BatchNorm2d):
        c = layer.num_features // groups
        rows = slice(k * c, (k + 1) * c)
        use_stats = not layer.training or layer.track_running_stats
        return F.batch_norm(
            h,
            layer.running_mean[rows] if use_stats else None,  # views: updated in place
            layer.running_var[rows] if use_stats else None,
            layer.weight[rows],
            layer.bias[rows],
            layer.training or not layer.track_running_stats,
            _average_factor(layer),
            layer.eps,
        )
    return layer(h)


class AdditiveDecoder(nn.Module):
    """Additive decoder (Lachapelle et al. 2023): each factor renders a layer on its own.

    ``sum_of="sigmoids"``: mean = sum_k sigmoid(g_k(z^k)), the layers add exactly (not clipped:
    a clip zeroes the gradient of every pixel above 1, and the Gaussian likelihood already
    pays for a mean outside [0, 1]). ``sum_of="logits"``: mean = sigmoid(sum_k g_k(z^k)),
    additive before an invertible squashing, in [0, 1]; a layer is then sigmoid(g_k(z^k)) and
    layers do not sum to the mean. ``init="black"`` biases the outputs so the mean starts
    near ``BLACK`` instead of K x 0.5 (sigmoids) or 0.5 (logits). ``background="static"``
    adds a learned image b (C, H, W) that no factor draws: sigmoid(b) is one more layer
    (sigmoids), or b one more logit (logits); it starts at ``BLACK`` with ``init="black"``.
    z (N, K d) -> mean (N, C, H, W).
    """

    residual_extra_channels = 0  # what a residual encoder reads besides the frame's C channels

    def __init__(
        self,
        channels: int,
        image_size: int,
        num_parts: int,
        part_dim: int,
        width: int = 64,
        weights: str = "shared",
        sum_of: str = "sigmoids",
        init: str = "grey",
        background: str = "none",
    ):
        super().__init__()
        self.z_dim, self.num_parts = num_parts * part_dim, num_parts
        self.sum_of = sum_of
        self.generators = FactorGenerators(
            num_parts, part_dim, channels, image_size, width, shared=weights == "shared"
        )
        if init == "black":
            start = _logit(BLACK / num_parts) if sum_of == "sigmoids" else _logit(BLACK) / num_parts
            self.generators.set_output_bias(torch.full((channels,), start))
        self.background = _static_background(background, (channels, image_size, image_size), init)

    @property
    def blocks_render_alone(self) -> bool:
        """Whether a block's layer is the same rendered alone as with the others: one
        generator each (a shared one normalises its batch over all the blocks it renders)."""
        return not self.generators.shared

    def parts(self, z: torch.Tensor, blocks: Sequence[int] | None = None) -> dict:
        """{"layers": (N, K, C, H, W)}: what each factor draws, sigmoid(g_k(z^k)); with
        ``blocks``, only theirs, (N, len(blocks), C, H, W). With a static background also
        "background": its layer sigmoid(b) (1, 1, C, H, W)."""
        out = {"layers": torch.sigmoid(self.generators(z, blocks))}
        if self.background is not None:
            out["background"] = torch.sigmoid(self.background)[None, None]
        return out

    def explained(self, outputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        """What the blocks whose generator ``outputs`` (N, k, C, H, W) are given draw, with the
        static background: the sum of their sigmoid layers (N, C, H, W), added in block order;
        ``None``: no mask (the residual encoder reads the frame minus this)."""
        layers = torch.sigmoid(outputs)
        drawn = layers[:, 0] if layers.shape[1] else layers.new_zeros(layers[:, :1].sum(1).shape)
        for j in range(1, layers.shape[1]):
            drawn = drawn + layers[:, j]
        if self.background is not None:
            drawn = drawn + torch.sigmoid(self.background)
        return drawn, None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.generators(z)  # (N, K, C, H, W)
        if self.sum_of == "sigmoids":
            mean = torch.sigmoid(logits).sum(1)
            return mean if self.background is None else mean + torch.sigmoid(self.background)
        summed = logits.sum(1)
        return torch.sigmoid(summed if self.background is None else summed + self.background)


class CompositeDecoder(nn.Module):
    """Composited decoder (MONet/IODINE-style): each factor renders RGB and a mask logit;
    masks are normalised over factors, so every pixel is shared out among them.

    (rgb_k, a_k) = g_k(z^k); m = softmax_k(a); mean = sum_k m_k sigmoid(rgb_k), in [0, 1].
    ``init="black"`` biases every factor's colour towards ``BLACK`` (masks start near 1/K
    either way). ``background="static"`` adds a slot that no factor draws: a learned colour
    logit image b (C, H, W) and mask logit image a_0 (1, H, W) in the softmax beside the
    factors' (a_0 starts at 0, b at grey, or at ``BLACK`` with ``init="black"``).
    z (N, K d) -> mean (N, C, H, W).
    """

    residual_extra_channels = 1  # the residual encoder also reads the unclaimed share (scope)

    def __init__(
        self,
        channels: int,
        image_size: int,
        num_parts: int,
        part_dim: int,
        width: int = 64,
        weights: str = "shared",
        init: str = "grey",
        background: str = "none",
    ):
        super().__init__()
        self.z_dim, self.num_parts, self.channels = num_parts * part_dim, num_parts, channels
        self.generators = FactorGenerators(
            num_parts, part_dim, channels + 1, image_size, width, shared=weights == "shared"
        )
        if init == "black":
            self.generators.set_output_bias(torch.tensor([_logit(BLACK)] * channels + [0.0]))
        size = (channels + 1, image_size, image_size)  # colour logits, then the mask logit
        self.background = _static_background(background, size, init, last_channel_at_zero=True)

    @property
    def blocks_render_alone(self) -> bool:
        """As :attr:`AdditiveDecoder.blocks_render_alone` (the generators' outputs; the masks
        are normalised over all blocks)."""
        return not self.generators.shared

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

    def explained(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the blocks whose generator ``outputs`` (N, k, C + 1, H, W) are given draw,
        composited: the softmax of their mask logits beside a rest slot, which is the static
        background's (its colour and mask logit) or else black with mask logit 0 (where the
        masks start). Returns the composite (N, C, H, W) and the rest's share (N, 1, H, W),
        the pixels no given block claims (MONet's scope)."""
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


def _static_background(
    kind: str, size: tuple[int, ...], init: str, last_channel_at_zero: bool = False
) -> nn.Parameter | None:
    """``background="static"``: a learned image of ``size`` at logit 0 (grey), or at
    ``BLACK`` with ``init="black"``; the last channel (a mask logit) at 0 if asked."""
    if kind not in BACKGROUNDS:
        raise ValueError(f"background: must be one of {', '.join(BACKGROUNDS)}, got {kind!r}")
    if kind == "none":
        return None
    value = torch.full(size, _logit(BLACK) if init == "black" else 0.0)
    if last_channel_at_zero:
        value[-1] = 0.0
    return nn.Parameter(value)


def make_decoder(
    kind: str,
    channels: int,
    image_size: int,
    num_parts: int,
    part_dim: int,
    width: int = 64,
    weights: str = "shared",
    sum_of: str = "sigmoids",
    init: str = "grey",
    background: str = "none",
) -> nn.Module:
    """The decoder named ``kind`` for latents of ``num_parts`` blocks of ``part_dim`` units:
    the paper's :class:`Decoder` (which sees the blocks together and takes no other option),
    an :class:`AdditiveDecoder` or a :class:`CompositeDecoder`."""
    if kind == "paper":
        if background != "none":
            raise ValueError("background: applies to --decoder additive or composite only")
        return Decoder(channels, image_size, num_parts * part_dim, width)
    if kind == "additive":
        return AdditiveDecoder(
            channels, image_size, num_parts, part_dim, width, weights, sum_of, init, background
        )
    if kind == "composite":
        return CompositeDecoder(
            channels, image_size, num_parts, part_dim, width, weights, init, background
        )
    raise ValueError(f"decoder: must be one of {', '.join(DECODERS)}, got {kind!r}")
