"""What and where, beyond the paper (``--decoder glimpse --encoder glimpse``; docs/model.md).

Each factor k has an appearance a^k, drawn once per sequence, and the paper's state z_t^k, of
which the first two units are the factor's position (x, y) in the frame's coordinates ([-1, 1]
across the frame, as ``torch.nn.functional.affine_grid`` has them) and the rest are free for
the transition (velocity):

    (c^k, alpha^k) = f(a^k)                        a G x G glimpse: colour and opacity
    layer_t^k = place(c^k alpha^k, z_t^k[:2])       a spatial transformer moves it, unscaled
    mean_t = sum_k layer_t^k prod_{j<k} (1 - alpha_t^j) + background prod_k (1 - alpha_t^k)

f is one glimpse generator for every factor (what tells the factors apart is their own a^k),
and the glimpses are composited front to back, factor 1 in front, over black or a learned
static background. The state moves a drawing and cannot change it; the appearance cannot move.
With ``gates=True`` (``--factor-gates``, beyond the recipe), factor k's opacity is
gamma_k alpha^k, gamma_k = sigmoid(GATE_GAIN g_k) a learnt parameter per factor, and the
guide's q(a^k) is N(gamma_k loc, scale^gamma_k), the prior N(0, I) when the gate is shut: a
factor the data do not need can draw nothing at no KL (docs/model.md).

The guide (:class:`GlimpsePosterior`) is q(a, z_{1:T} | x_{1:T}) = q(a | x_{1:T}, z_{1:T})
prod_t q(z_t | z_{t-1}, x_t, what the guide has seen of each factor before t), still a filter:

* Position of factor k at t: a soft-argmax over candidate positions p of the score
  ``beta * ncc(template_k, r_t^k at p) + log N(p; prior's predicted position)`` (with
  ``match="residual"``, beyond the recipe, the ncc's residual energy is taken as at least half
  the frame's most energetic window, so where the factors before k have left next to nothing to
  draw, factor k is placed by the prior's prediction alone; ``match="visible"``, that and the
  match times the template's visibility, its peak premultiplied colour relative to the most
  visible of the sequence's K templates, raised to ``visibility_weight`` (a buffer, 1 unless
  the training loop's schedule has it lower): a factor that draws next to nothing beside one
  that draws an object is placed by the prior's prediction; with ``window``,
  ``--glimpse-window``, beyond the recipe, the soft-argmax reads only the candidates within
  ``window`` pixels of the best-scoring one (``window_radius``, a buffer: ``window`` unless the
  training loop's schedule has it wider), so of two objects matched alike it takes one, not a
  point between them), where ``template_k`` is the
  glimpse the decoder draws from the factor's *running appearance* (the q(a) mean of the
  glimpses cropped at its posterior track at steps 1..t-1), and r_t^k is the frame less what
  factors 1..k-1 draw at their positions at t (explaining away). At t = 1 there
  is no appearance yet: a small convolutional network scores the residual instead. The
  position's variance is the spread of the soft-argmax plus a learned floor.
* The other units: an MLP of the prior's prediction and the matched position, its loc and
  log-variance softly bounded (to +-5 and +-8); with ``previous=True`` (``--guide-previous``,
  beyond the recipe) it also reads the factor's own state at t - 1, z_{t-1}^k, of which the
  prior's prediction is a function: the step since the last frame is then a difference of
  two of its inputs.
* q(a^k | x_{1:T}, z_{1:T}): a Gaussian from the mean of the glimpses' codes, cropped from x_t at
  factor k's sampled position z_t^k[:2] (the inverse transform) at every t.

The running appearance is a guide input at t (a function of x_{1:t-1} and z_{1:t-1}); the
templates are rendered without gradient, so the decoder is trained by the model's likelihood
alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import GLIMPSE_MATCHES as MATCHES  # how a template pulls its position
from .decoders import BLACK, _logit
from .networks import LEAKY_SLOPE, FrameDecoder, Posterior, full_precision

POSE_UNITS = 2  # z_t^k[:2]: the position (x, y)
# match="residual": a window's energy counts as at least this share of the most energetic
# window of the frame less the background, so a residual with little left in it pulls weakly
LEFT_FLOOR = 0.5
START_OPACITY = 0.05  # a glimpse's colour starts near BLACK, its opacity near transparent
GATE_START = 0.95  # gates=True: each factor's gate starts nearly open
# and its logit is GATE_GAIN times its parameter: Adam moves a parameter about lr a step, and
# a spare factor's gate must shut (logit 3 to -5) within a run's first thousand steps
GATE_GAIN = 10.0
# The other units' posterior loc and log-variance stay within +-5 and +-8 (softly): the
# prior's prediction they read is a function of the guide's own previous sample, and unbounded
# the loop through the two diverged (x7 a step) when training moved to longer sequences.
LOC_BOUND, LOGVAR_BOUND = 5.0, 8.0


def glimpse_scale(glimpse_size: int, image_size: int) -> float:
    """Half a glimpse's width in frame coordinates ([-1, 1] across the frame)."""
    return glimpse_size / image_size


def _translation_grid(position: torch.Tensor, scale: float, size: int) -> torch.Tensor:
    """``F.affine_grid`` (align_corners=False) of theta = [[scale, 0, x], [0, scale, y]] for
    each (x, y) of ``position`` (N, 2), at size x size: (N, size, size, 2). Built as an outer
    sum, as a translation allows (affine_grid's batched matmul is most of a step's cost)."""
    base = (2 * torch.arange(size, device=position.device, dtype=position.dtype) + 1) / size - 1
    gx = base[None, None, :] * scale + position[:, 0, None, None]  # (N, 1, size)
    gy = base[None, :, None] * scale + position[:, 1, None, None]  # (N, size, 1)
    N = len(position)
    return torch.stack([gx.expand(N, size, size), gy.expand(N, size, size)], -1)


def place(glimpses: torch.Tensor, position: torch.Tensor, image_size: int) -> torch.Tensor:
    """Glimpses (N, C, G, G) centred at ``position`` (N, 2) as (x, y) in frame coordinates:
    (N, C, H, H), zero outside the glimpse. A glimpse centred at 2 i / H - 1 covers pixels
    i - G/2 .. i + G/2 - 1 exactly (no interpolation at whole-pixel positions)."""
    return _sample(glimpses, _placement_grid(position, glimpses.shape[-1], image_size))


def _placement_grid(position: torch.Tensor, glimpse_size: int, image_size: int) -> torch.Tensor:
    """The sampling grid (N, H, H, 2) of :func:`place`."""
    s = glimpse_scale(glimpse_size, image_size)
    return _translation_grid(-position / s, 1.0 / s, image_size)


def _sample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def crop(frames: torch.Tensor, position: torch.Tensor, glimpse_size: int) -> torch.Tensor:
    """The inverse of :func:`place`: the G x G window of ``frames`` (N, C, H, H) centred at
    ``position`` (N, 2), (N, C, G, G), zero outside the frame."""
    grid = _translation_grid(position, glimpse_scale(glimpse_size, frames.shape[-1]), glimpse_size)
    return _sample(frames, grid)


def composite(layers: torch.Tensor, alphas: torch.Tensor, background: torch.Tensor | None):
    """Front to back, factor 1 in front: layers (N, K, C, H, W) premultiplied by their
    opacities alphas (N, K, 1, H, W). Returns the mean (N, C, H, W), what each factor shows
    (N, K, C, H, W) and its visible share of each pixel (N, K, 1, H, W); the background's share
    is what is left."""
    clear = torch.cumprod(1 - alphas, dim=1)  # prod_{j<=k} (1 - alpha_j)
    behind = torch.cat([torch.ones_like(clear[:, :1]), clear[:, :-1]], 1)  # prod_{j<k}
    shown, share = layers * behind, alphas * behind
    mean = shown.sum(1)
    if background is not None:
        mean = mean + background * clear[:, -1]
    return mean, shown, share


def composite_mean(layers: torch.Tensor, alphas: torch.Tensor, background: torch.Tensor | None):
    """:func:`composite`'s mean alone, summed front to back one factor at a time, without the
    (N, K, C, H, W) products that ``composite`` returns: what training needs, in less time
    (docs/performance.md)."""
    mean = scope = None
    for layer, alpha in zip(layers.unbind(1), alphas.unbind(1)):
        mean = layer if mean is None else mean + layer * scope
        scope = 1 - alpha if scope is None else scope * (1 - alpha)
    return mean if background is None else mean + background * scope


class GlimpseGenerator(nn.Module):
    """f: appearance (N, A) -> colour and opacity (N, C + 1, G, G) in [0, 1]: a Linear to a
    G/4 x G/4 map, two transposed convolutions 4x4/2 (ReLU between), sigmoids."""

    def __init__(self, appearance_dim: int, channels: int, glimpse_size: int, width: int):
        super().__init__()
        if glimpse_size % 4 or glimpse_size < 8:
            raise ValueError(f"glimpse_size: must be a multiple of 4, >= 8, got {glimpse_size}")
        self.side, self.width = glimpse_size // 4, 2 * width
        self.fc = nn.Sequential(nn.Linear(appearance_dim, self.width * self.side**2), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(self.width, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels + 1, 4, stride=2, padding=1),
        )
        with torch.no_grad():  # start near black and nearly transparent
            start = [_logit(BLACK)] * channels + [_logit(START_OPACITY)]
            self.deconv[-1].bias.copy_(torch.tensor(start))

    def forward(self, appearance: torch.Tensor) -> torch.Tensor:
        h = self.fc(appearance).view(-1, self.width, self.side, self.side)
        return full_precision(torch.sigmoid(self.deconv(h)))


class GlimpseDecoder(FrameDecoder):
    """The mean of p(x_t | z_t, a) of the module docstring: z (N, K d), appearance (N, K, A)
    -> (N, C, H, W). ``background``: "none" (black) or "static" (a learned image)."""

    def __init__(self, channels: int, image_size: int, num_parts: int, part_dim: int,
                 appearance_dim: int, glimpse_size: int, width: int = 16,
                 background: str = "none", gates: bool = False):  # fmt: skip
        super().__init__()
        if part_dim < POSE_UNITS:
            raise ValueError(f"factor_dim: the glimpse decoder needs >= {POSE_UNITS} (the "
                             f"position), got {part_dim}")  # fmt: skip
        if not 0 < glimpse_size <= image_size:
            raise ValueError(f"glimpse_size: must be in 1..{image_size}, got {glimpse_size}")
        self.z_dim, self.num_parts, self.part_dim = num_parts * part_dim, num_parts, part_dim
        self.channels, self.image_size = channels, image_size
        self.appearance_dim, self.glimpse_size = appearance_dim, glimpse_size
        self.generator = GlimpseGenerator(appearance_dim, channels, glimpse_size, width)
        self.background = None
        if background == "static":
            value = torch.full((channels, image_size, image_size), _logit(BLACK))
            self.background = nn.Parameter(value)
        elif background != "none":
            raise ValueError(f"background: must be one of none, static, got {background!r}")
        self.gate_scores = None  # gates=True: a learnt gate per factor on what it draws
        if gates:  # its logit / GATE_GAIN
            start = _logit(GATE_START) / GATE_GAIN
            self.gate_scores = nn.Parameter(torch.full((num_parts,), start))

    def gates(self) -> torch.Tensor | None:
        """Each factor's gate (K,) in (0, 1), or None without gates."""
        return None if self.gate_scores is None else torch.sigmoid(GATE_GAIN * self.gate_scores)

    def positions(self, z: torch.Tensor) -> torch.Tensor:
        """Each factor's position (N, K, 2) from z (N, K d)."""
        return z.view(len(z), self.num_parts, self.part_dim)[..., :POSE_UNITS]

    def glimpses(self, appearance: torch.Tensor, factors: slice = slice(None)) -> torch.Tensor:
        """What each factor draws, before it is placed: (N, K, C + 1, G, G); ``appearance``
        (N, K, A) holds the ``factors`` of the decoder's (all by default)."""
        N, K, A = appearance.shape
        G = self.glimpse_size
        drawn = self.generator(appearance.reshape(N * K, A)).view(N, K, self.channels + 1, G, G)
        if self.gate_scores is None:
            return drawn
        opacity = drawn[:, :, -1:] * self.gates()[factors, None, None, None]  # shut: nothing
        return torch.cat([drawn[:, :, :-1], opacity], 2)

    def layers(self, z: torch.Tensor, appearance: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each factor's glimpse placed at its position: premultiplied colour (N, K, C, H, W)
        and opacity (N, K, 1, H, W). ``appearance``: (N, K, A), one per row of z, or (n, K, A)
        one per sequence of N / n rows of z in sequence order (drawn once, placed N / n
        times)."""
        N, K = len(z), appearance.shape[1]
        if N % len(appearance):
            raise ValueError(f"appearance: {len(appearance)} rows do not divide z's {N}")
        glimpses = self.glimpses(appearance)  # (n, K, C + 1, G, G)
        glimpses = glimpses.repeat_interleave(N // len(appearance), 0)  # (N, K, C + 1, G, G)
        colour, alpha = glimpses.split([self.channels, 1], 2)
        grid = _placement_grid(self.positions(z).reshape(N * K, POSE_UNITS), self.glimpse_size,
                               self.image_size)  # fmt: skip
        shape = (N, K, -1, self.image_size, self.image_size)  # colour and opacity placed apart:
        # slices of one placed tensor would each cost the backward a zero fill of all of it
        placed = (_sample(part.flatten(0, 1), grid).view(shape) for part in (colour * alpha, alpha))
        return tuple(placed)

    def _background(self) -> torch.Tensor | None:
        return None if self.background is None else torch.sigmoid(self.background)

    def forward(self, z: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """The mean (N, C, H, W); ``appearance`` as :meth:`layers` reads it."""
        return composite_mean(*self.layers(z, appearance), self._background())

    def parts(self, z: torch.Tensor, appearance: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"layers": what each factor shows (N, K, C, H, W), "masks": its share of each pixel
        (N, K, 1, H, W)}; with a static background also "background" (1, 1, C, H, W)."""
        _, shown, share = composite(*self.layers(z, appearance), self._background())
        out = {"layers": shown, "masks": share}
        if self.background is not None:
            out["background"] = torch.sigmoid(self.background)[None, None]
        return out

    def visible_changes(self, z: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """How far what each factor shows is from the background it covers (N, K, H, W): Σ over
        channels of |shown_k − share_k · background| (black where there is none). A drawing
        the colour of the background, or hidden behind other factors, shows nothing."""
        _, shown, share = composite(*self.layers(z, appearance), None)
        background = self._background()
        return (shown if background is None else shown - share * background).abs().sum(2)

    def explained(self, layers, alphas) -> tuple[torch.Tensor, torch.Tensor]:
        """What the given factors' placed layers (N, k, C, H, W) and opacities draw in front
        of everything else, with the static background (if any) in the share of each pixel
        they leave, and that share (N, 1, H, W): x minus the first is what the other factors
        have left to draw, against black."""
        N, _, C, H, W = layers.shape
        if layers.shape[1] == 0:
            mean, scope = layers.new_zeros(N, C, H, W), layers.new_ones(N, 1, H, W)
        else:
            mean, _, share = composite(layers, alphas, None)
            scope = 1 - share.sum(1)
        return self.over_background(mean, scope), scope

    def over_background(self, front: torch.Tensor, scope: torch.Tensor) -> torch.Tensor:
        """``front`` (N, C, H, W), drawn by factors that leave ``scope`` (N, 1, H, W) of each
        pixel, over the static background (if any)."""
        background = self._background()
        return front if background is None else front + background * scope


class GlimpseEncoder(nn.Module):
    """Glimpses (N, C, G, G) -> codes (N, E): two convolutions 4x4/2 and a Linear."""

    def __init__(self, channels: int, glimpse_size: int, width: int, code: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Flatten(),
            nn.Linear(2 * width * (glimpse_size // 4) ** 2, code),
            nn.LeakyReLU(LEAKY_SLOPE),
        )

    def forward(self, glimpses: torch.Tensor) -> torch.Tensor:
        return self.net(glimpses)


@dataclass
class Seen:
    """What the guide has seen of each factor up to t - 1: the sum of its glimpses' codes
    (B, K, E) over ``steps`` steps, and its state at t - 1 (B, K, d) (both None before t =
    1)."""

    codes: torch.Tensor | None = None
    steps: int = 0
    last: torch.Tensor | None = None


def soft_argmax(scores: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The mean and variance (N, 2) of position under softmax(scores) over a grid: scores
    (N, S, S) at positions ``coords`` (S,) along each axis (row y, column x)."""
    N, S, _ = scores.shape
    p = torch.softmax(scores.reshape(N, S * S), 1).view(N, S, S)
    px, py = p.sum(1), p.sum(2)  # marginals over x (columns) and y (rows)
    mean = torch.stack([px @ coords, py @ coords], 1)
    second = torch.stack([px @ coords**2, py @ coords**2], 1)
    return mean, (second - mean**2).clamp_min(0.0)


def near_best(scores: torch.Tensor, radius: int | float | torch.Tensor) -> torch.Tensor:
    """scores (N, S, S) with every candidate more than ``radius`` grid steps (along either
    axis) from the best-scoring one set to -inf: a soft-argmax of them chooses one peak."""
    N, S, _ = scores.shape
    best = scores.reshape(N, S * S).argmax(1)
    steps = torch.arange(S, device=scores.device)
    rows = (steps - (best // S)[:, None]).abs() <= radius  # (N, S)
    cols = (steps - (best % S)[:, None]).abs() <= radius
    return scores.masked_fill(~(rows[:, :, None] & cols[:, None, :]), -math.inf)


def _window_sums(images: torch.Tensor, size: int) -> torch.Tensor:
    """Sums of every size x size window of images (N, H, W): (N, H - size + 1, W - size + 1),
    from the summed-area table (a box filter's convolution is far slower on the CPU)."""
    table = F.pad(images.cumsum(1).cumsum(2), (1, 0, 1, 0))
    return (table[:, size:, size:] - table[:, :-size, size:] - table[:, size:, :-size]
            + table[:, :-size, :-size])  # fmt: skip


class GlimpsePosterior(Posterior):
    """The guide of the module docstring, for a :class:`GlimpseDecoder`."""

    reads_features = False

    def __init__(self, num_factors: int, factor_dim: int, channels: int, image_size: int,
                 appearance_dim: int, glimpse_size: int, width: int = 16,
                 hidden: int = 128, match: str = "ncc", previous: bool = False,
                 window: int | None = None):  # fmt: skip
        super().__init__()
        if match not in MATCHES:
            raise ValueError(f"match: must be one of {', '.join(MATCHES)}, got {match!r}")
        if window is not None and window < 1:
            raise ValueError(f"window: must be >= 1 pixel, got {window}")
        self.match, self.previous, self.window = match, previous, window
        self.K, self.d = num_factors, factor_dim
        self.image_size, self.glimpse_size = image_size, glimpse_size
        code = 4 * appearance_dim
        self.encoder = GlimpseEncoder(channels, glimpse_size, width, code)
        self.appearance_head = nn.Linear(code, 2 * appearance_dim)
        self.finder = nn.Sequential(  # t = 1: where is something in the residual and scope
            nn.Conv2d(channels + 1, width // 2, 3, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(width // 2, width // 2, 3, padding=2, dilation=2),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(width // 2, 1, 3, padding=4, dilation=4),
        )  # a 15-pixel view (3 + 4 + 8)
        self.log_sharpness = nn.Parameter(torch.tensor(math.log(10.0)))  # beta of the ncc
        # match="visible": the exponent of the visibility (not saved: 1 once trained)
        self.register_buffer("visibility_weight", torch.tensor(1.0), persistent=False)
        # window: the radius read at this step (not saved: ``window`` once trained)
        self.register_buffer("window_radius", torch.tensor(float(window or 0)), persistent=False)
        self.pose_logvar_floor = nn.Parameter(torch.tensor(-6.0))
        rest = factor_dim - POSE_UNITS
        reads = 2 * factor_dim + 3 * POSE_UNITS + (factor_dim if previous else 0)
        self.rest = nn.Sequential(  # the other units, and their log-variance
            nn.Linear(reads, hidden),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Linear(hidden, 2 * rest),
        )
        H = image_size
        self.register_buffer("pixel_coords", (2 * torch.arange(H) + 1.0) / H - 1, False)
        self.register_buffer("corner_coords", 2 * torch.arange(H + 1.0) / H - 1, False)

    def start(self, x: torch.Tensor) -> Seen:
        return Seen()

    def appearance_moments(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """loc and scale (..., A) of q(a) from mean glimpse codes (..., E)."""
        loc, log_scale = full_precision(self.appearance_head(codes)).chunk(2, -1)
        return loc, log_scale.clamp(-10.0, 5.0).exp()

    def appearance(
        self, seen: Seen, gates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """loc and scale (B, K, A) of q(a^k | x_{1:T}, z_{1:T}); with the decoder's ``gates``
        (K,), g_k * loc and scale ** g_k: the prior N(0, I) as factor k's gate closes."""
        loc, scale = self.appearance_moments(seen.codes / seen.steps)
        if gates is None:
            return loc, scale
        g = gates[:, None]
        return g * loc, scale.pow(g)

    def see(self, seen: Seen, z: torch.Tensor, x_t: torch.Tensor) -> Seen:
        """Add the glimpses cropped from x_t at each factor's sampled position z (B, K, d);
        an entangled prior's one factor (B, 1, K d) is read as its K parts."""
        z = z.reshape(len(z), self.K, self.d)
        codes = self._codes(x_t, z[..., :POSE_UNITS])
        total = codes if seen.codes is None else seen.codes + codes
        return Seen(total, seen.steps + 1, z)

    def _codes(self, x_t: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Codes (B, k, E) of the glimpses of x_t (B, C, H, W) at positions (B, k, 2)."""
        B, k = positions.shape[:2]
        frames = x_t.unsqueeze(1).expand(B, k, *x_t.shape[1:]).flatten(0, 1)
        glimpses = crop(frames, positions.reshape(B * k, POSE_UNITS), self.glimpse_size)
        return self.encoder(glimpses).view(B, k, -1)

    def _chosen(self, scores: torch.Tensor) -> torch.Tensor:
        """The candidates a position is read from: all, or with ``window`` those near the
        best-scoring one (:func:`near_best`), ``window_radius`` grid steps: ``window`` unless a
        schedule (``--glimpse-window-from``) has set it wider for this step."""
        return scores if self.window is None else near_best(scores, self.window_radius)

    def _window_energy(self, residual: torch.Tensor) -> torch.Tensor:
        """Σ r² (B, H + 1, H + 1) over the glimpse-sized window at each glimpse centre."""
        pad = self.glimpse_size // 2
        return _window_sums(F.pad(residual, (pad,) * 4).pow(2).sum(1), self.glimpse_size)

    def _ncc(self, residual: torch.Tensor, template: torch.Tensor,
             floor: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Normalised cross-correlation (B, H + 1, H + 1) of each residual (B, C, H, W) with its
        own template (B, C, G, G), at glimpse centres 2 i / H - 1; a window's energy taken as
        at least ``floor`` (B,) where given."""
        B, C, H, _ = residual.shape
        pad = self.glimpse_size // 2
        r = F.pad(residual, (pad,) * 4)
        G = self.glimpse_size  # one channel per group: the CPU's fast depthwise path
        dot = F.conv2d(r.reshape(1, B * C, *r.shape[-2:]), template.reshape(B * C, 1, G, G),
                       groups=B * C).view(B, C, H + 1, H + 1).sum(1)  # fmt: skip
        energy = _window_sums(r.pow(2).sum(1), G).clamp_min(1e-8)  # (B, H + 1, H + 1)
        if floor is not None:
            energy = torch.maximum(energy, floor[:, None, None])
        norm = template.flatten(1).norm(dim=1)[:, None, None]
        return dot / (energy.sqrt() * norm + 1e-6)

    def step(self, features, x_t, prior, decoder: GlimpseDecoder, seen: Seen):
        B, K, d = x_t.shape[0], self.K, self.d
        prior_loc, prior_logvar = (m.view(B, K, d) for m in prior)
        if seen.codes is not None:  # the running appearance: q(a) of the glimpses so far
            with torch.no_grad():
                running = self.appearance_moments(seen.codes / seen.steps)[0]
                glimpses = decoder.glimpses(running)  # (B, K, C + 1, G, G)
                if self.match == "visible":  # each template's peak colour against the clearest
                    peak = (glimpses[:, :, :-1] * glimpses[:, :, -1:]).flatten(2).amax(2)
                    visibility = peak / peak.amax(1, keepdim=True).clamp_min(1e-8)  # (B, K)
        # what factors 1..k-1 draw at their posterior means, composited front to back as the
        # decoder does, and the share of each pixel they leave
        front, scope = torch.zeros_like(x_t), x_t.new_ones(B, 1, *x_t.shape[2:])
        locs, logvars, floor = [], [], None
        for k in range(K):
            with torch.no_grad():
                drawn = decoder.over_background(front, scope)
            residual = x_t - drawn
            if k == 0 and self.match in ("residual", "visible") and seen.codes is not None:
                with torch.no_grad():  # what there is to draw: the frame less the background
                    floor = LEFT_FLOOR * self._window_energy(residual).flatten(1).amax(1)
            if seen.codes is None:  # t = 1: no appearance yet
                scores = self.finder(torch.cat([residual, scope], 1))[:, 0]
                pos, spread = soft_argmax(self._chosen(scores), self.pixel_coords)
            else:
                colour, alpha = glimpses[:, k, :-1], glimpses[:, k, -1:]
                with torch.no_grad():  # a function of the data and of no-gradient templates
                    ncc = self._ncc(residual, colour * alpha, floor)
                    if self.match == "visible":  # as visible as the clearest one: fully
                        ncc = ncc * visibility[:, k, None, None] ** self.visibility_weight
                coords = self.corner_coords
                mu, var = prior_loc[:, k, :POSE_UNITS], prior_logvar[:, k, :POSE_UNITS].exp()
                log_prior = -0.5 * ((coords[None, None, :] - mu[..., None]) ** 2 / var[..., None])
                scores = (self.log_sharpness.exp() * ncc + log_prior[:, 1, :, None]
                          + log_prior[:, 0, None, :])  # fmt: skip
                pos, spread = soft_argmax(self._chosen(scores), coords)
            pose_logvar = torch.logaddexp(spread.clamp_min(1e-12).log(), self.pose_logvar_floor)
            moved = pos - prior_loc[:, k, :POSE_UNITS]  # what the prior did not predict
            inputs = [prior_loc[:, k], prior_logvar[:, k], pos, pose_logvar, moved]
            if self.previous:  # z_{t-1}^k, without gradient as the prior's prediction; 0 at t = 1
                last = prior_loc.new_zeros(B, d) if seen.last is None else seen.last[:, k].detach()
                inputs.append(last)
            rest_loc, rest_logvar = self.rest(torch.cat(inputs, 1)).chunk(2, 1)
            rest_loc = LOC_BOUND * torch.tanh(rest_loc / LOC_BOUND)
            rest_logvar = LOGVAR_BOUND * torch.tanh(rest_logvar / LOGVAR_BOUND)
            locs.append(torch.cat([pos, rest_loc], 1))
            logvars.append(torch.cat([pose_logvar, rest_logvar], 1))
            if k < K - 1:  # what factor k draws at its posterior mean, for the factors after it
                with torch.no_grad():
                    if seen.codes is None:
                        code = self._codes(x_t, pos[:, None])
                        running_k = self.appearance_moments(code)[0]
                        glimpse_k = decoder.glimpses(running_k, slice(k, k + 1))[:, 0]
                    else:
                        glimpse_k = glimpses[:, k]
                    colour, alpha = glimpse_k[:, :-1], glimpse_k[:, -1:]
                    placed = place(torch.cat([colour * alpha, alpha], 1), pos, self.image_size)
                    front = front + placed[:, :-1] * scope
                    scope = scope * (1 - placed[:, -1:])
        return torch.cat(locs, 1), full_precision(torch.cat(logvars, 1))
