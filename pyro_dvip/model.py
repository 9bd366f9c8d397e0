"""The factored temporal VAE of Whitney & Fergus as a Pyro model and guide.

Generative model (``shared/paper/math.md``), K factors of size d, z_dim = K d:

    p(x_{1:T}, z_{1:T}) = prod_t p(x_t | z_t) p(z_t | z_{t-1})
    p(z_1) = N(0, I)
    p(z_t | z_{t-1}) = prod_k N(z_t^k | mu_k(z_{t-1}^k), diag sigma_k^2(z_{t-1}^k))
    p(x_t | z_t) = N(x_t | g(z_t), sigma_x^2 I)                      g: DCGAN generator

Filtering posterior (Appendix A), "like a Kalman filter":

    q(z_{1:T} | x_{1:T}) = prod_t q(z_t | z_{t-1}, x_t)
    q(z_t | z_{t-1}, x_t) = N(h(e(x_t), stop_grad[mu(z_{t-1}), log sigma^2(z_{t-1})]))

with e the DCGAN discriminator and zeros for the prior's prediction at t = 1.

Trace sites: ``z_1 ... z_T`` (value (B, K, d), batch (B, K) inside the ``videos`` and
``factors`` plates, event (d,)) and ``x`` (value (B, T, C, H, W), batch (B, T) inside the
``videos`` and ``steps`` plates, event (C, H, W)). The decoder and encoder each run once over
all B T frames. The entangled baseline is ``DVIP(num_factors=1, factor_dim=K * d)``.

g is the paper's generator of the whole z_t unless ``decoder`` replaces it: any module
z (N, z_dim) -> mean (N, C, H, W), e.g. the per-factor ``networks.AdditiveDecoder``
(g(z_t) = sum_k g_k(z_t^k)) or ``networks.CompositeDecoder``. Only the mean of p(x_t | z_t)
changes; the sites, plates and the bound do not.

Beyond the paper, ``encoder="residual"`` (with an additive decoder of sigmoid layers, or a
composite one) makes the guide explain away, as MONet's attention does: block 1 of
q(z_t | z_{t-1}, x_t) reads x_t as above; block k > 1 reads its own encoder's view of what
blocks 1..k-1 do not draw,

    r_t^k = x_t - sum_{j<k} sigmoid(g_j(m_t^j))        m_t^j: block j's posterior mean at t

(additive; plus the static background's layer if there is one), or with a composite decoder

    r_t^k = (x_t - sum_{j in R, j<k} w_j sigmoid(rgb_j),  w_R)      w = softmax over {R, j<k}

of the mask logits of blocks j < k beside a rest slot R (the static background's colour and
mask logit, or black at logit 0): the composite of what the blocks before k draw, and the
share of each pixel they leave unclaimed (MONet's scope) as one more input channel. Rendered
without gradient and without touching BatchNorm statistics, through the same posterior head,
of which it keeps block k. It is still q(z_t | z_{t-1}, x_t): the m_t^j are functions of x_t
and z_{t-1}. Same sites, plates and bound; only the guide's networks change.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import pyro
import torch
from pyro import distributions as dist
from pyro import poutine
from torch import nn

from .distributions import FixedVarianceNormal
from .networks import CompositeDecoder, Decoder, Encoder, PosteriorHead, check_image_size
from .priors import FactoredMLPTransition, Transition


class DVIP(nn.Module):
    """Disentangling Video with Independent Prediction.

    Args:
        num_factors: K, the number of independently predicted factors.
        factor_dim: d, the size of each factor.
        channels, image_size: frame shape; ``image_size`` a power of two in [16, 256].
        obs_var: sigma_x^2 of the Gaussian likelihood (0.25 Moving MNIST, 0.05 video).
        width: channel multiplier of the DCGAN networks (64 is the paper's).
        transition: a :class:`Transition` instance, or a class built as
            ``transition(num_factors, factor_dim)``; default the paper's factored MLP.
        transition_layers: hidden 128x128 layers of the default transition (paper: 3).
        encoder_linear_act: a LeakyReLU after the encoder's final Linear (the authors' code
            has none; runs saved before this option existed had one).
        decoder: the mean of p(x_t | z_t): a module z (N, z_dim) -> (N, C, H, W), or a
            callable with no arguments that builds one (called where the paper's decoder is
            built, so the other networks draw the same initial weights); default the paper's.
        encoder: "paper" (one encoder of x_t for every factor) or "residual" (block k > 1 of
            the posterior reads what blocks before it do not draw; see the module docstring).
            "residual" needs an ``AdditiveDecoder`` summing sigmoid layers, or a
            ``CompositeDecoder``.
        residual_width: channel multiplier of the residual encoders (default ``width``).
    """

    def __init__(
        self,
        num_factors: int,
        factor_dim: int,
        channels: int = 3,
        image_size: int = 64,
        obs_var: float = 0.25,
        width: int = 64,
        transition: Transition | type[Transition] | None = None,
        transition_layers: int = 3,
        encoder_linear_act: bool = False,
        decoder: nn.Module | Callable[[], nn.Module] | None = None,
        encoder: str = "paper",
        residual_width: int | None = None,
    ):
        super().__init__()
        for name, value in [
            ("num_factors", num_factors),
            ("factor_dim", factor_dim),
            ("channels", channels),
            ("width", width),
        ]:
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if transition_layers < 0:
            raise ValueError(f"transition_layers must be >= 0, got {transition_layers}")
        if not obs_var > 0:
            raise ValueError(f"obs_var must be > 0, got {obs_var}")
        check_image_size(image_size)
        self.num_factors, self.factor_dim = num_factors, factor_dim
        self.z_dim = num_factors * factor_dim
        self.channels, self.image_size = channels, image_size
        self.obs_var = float(obs_var)

        if transition is None:
            transition = FactoredMLPTransition(
                num_factors, factor_dim, num_hidden_layers=transition_layers
            )
        elif isinstance(transition, type):
            transition = transition(num_factors, factor_dim)
        if not isinstance(transition, Transition):
            raise TypeError(
                f"transition must be a pyro_dvip.Transition, got {type(transition).__name__}"
            )
        if (transition.num_factors, transition.factor_dim) != (num_factors, factor_dim):
            raise ValueError(
                f"transition is for {transition.num_factors}x{transition.factor_dim} factors, "
                f"the model has {num_factors}x{factor_dim}"
            )
        self.transition = transition
        self.encoder = Encoder(channels, image_size, self.z_dim, width, encoder_linear_act)
        self.posterior = PosteriorHead(self.z_dim)
        if decoder is None:
            decoder = Decoder(channels, image_size, self.z_dim, width)
        elif not isinstance(decoder, nn.Module):
            decoder = decoder()
        if getattr(decoder, "z_dim", self.z_dim) != self.z_dim:
            raise ValueError(f"decoder is for z_dim {decoder.z_dim}, the model has {self.z_dim}")
        self.decoder = decoder
        self.residual_encoders = None
        self.tracking = encoder == "tracking"
        if encoder in ("residual", "tracking"):
            additive_sigmoids = getattr(decoder, "sum_of", None) == "sigmoids"
            composite = isinstance(decoder, CompositeDecoder)
            if not (additive_sigmoids or composite) or decoder.num_parts < 2:
                raise ValueError(
                    f"encoder {encoder!r} needs an additive decoder of sigmoid layers or a "
                    "composite one, with at least 2 parts (--decoder additive --decoder-sum "
                    "sigmoids, or --decoder composite; --factors >= 2)"
                )
            reads = channels + decoder.residual_extra_channels  # the residual (and scope)
            reads += channels if self.tracking else 0  # and the block's predicted drawing
            self.residual_encoders = nn.ModuleList(
                Encoder(reads, image_size, self.z_dim, residual_width or width, encoder_linear_act)
                for _ in range(decoder.num_parts - 1)
            )  # built last: the paper's networks draw the same initial weights either way
            if self.tracking:  # block 1 reads the frame beside its prediction, every step
                self.encoder = Encoder(reads, image_size, self.z_dim, width, encoder_linear_act)
        elif encoder != "paper":
            raise ValueError(f"encoder: must be one of paper, residual, tracking, got {encoder!r}")
        elif residual_width is not None:
            raise ValueError("residual_width: applies to encoder 'residual' or 'tracking' only")
        # z_{t-1} -> (z_{t-1}, p(z_t | z_{t-1})) from the guide, inside ``sharing_predictions``
        self._shared: dict | None = None

    def model(self, x: torch.Tensor, kl_scale: float = 1.0) -> None:
        """p(x_{1:T}, z_{1:T}); x: (B, T, C, H, W) in [0, 1]. ``kl_scale`` anneals the latents."""
        B, T = x.shape[:2]
        zs = []
        factors = pyro.plate("factors", self.num_factors, dim=-1)
        with pyro.plate("videos", B, dim=-2):
            z = None
            for t in pyro.markov(range(1, T + 1)):
                p_z = self.transition.initial(B, x) if t == 1 else self._prior(z)
                with factors, poutine.scale(scale=kl_scale):
                    z = pyro.sample(f"z_{t}", p_z)  # (B, K, d)
                zs.append(z)
            mean = self.decoder(torch.stack(zs, 1).reshape(B * T, self.z_dim))
            mean = mean.view(x.shape)  # (B, T, C, H, W)
            with pyro.plate("steps", T, dim=-1):
                pyro.sample("x", FixedVarianceNormal(mean, self.obs_var).to_event(3), obs=x)

    def guide(self, x: torch.Tensor, kl_scale: float = 1.0) -> None:
        """q(z_{1:T} | x_{1:T}) = prod_t q(z_t | z_{t-1}, x_t); same arguments as ``model``."""
        B, T = x.shape[:2]
        if not self.tracking:  # (tracking: block 1's encoder reads each step's prediction too)
            features = self.encoder(x.flatten(0, 1)).view(B, T, self.z_dim)
        if self._shared is not None:
            self._shared.clear()  # a new sample: the model replays this guide run next
        factors = pyro.plate("factors", self.num_factors, dim=-1)
        with pyro.plate("videos", B, dim=-2):
            z = None
            for t in pyro.markov(range(1, T + 1)):
                if t == 1:
                    prior_loc = prior_logvar = x.new_zeros(B, self.z_dim)
                else:
                    # The transition is trained through the model's KL only (Appendix A).
                    prior_loc, prior_logvar = (
                        m.detach().reshape(B, self.z_dim) for m in self._prior_moments(z)
                    )
                if self.tracking:
                    cues = self._predicted_drawings(x[:, t - 1], prior_loc, predicted=t > 1)
                    loc, logvar = self._explain_away(
                        x[:, t - 1], None, None, prior_loc, prior_logvar, cues
                    )
                else:
                    loc, logvar = self.posterior(features[:, t - 1], prior_loc, prior_logvar)
                    if self.residual_encoders is not None:
                        loc, logvar = self._explain_away(
                            x[:, t - 1], loc, logvar, prior_loc, prior_logvar
                        )
                q_z = dist.Normal(
                    loc.view(B, self.num_factors, self.factor_dim),
                    (0.5 * logvar).exp().view(B, self.num_factors, self.factor_dim),
                ).to_event(1)
                with factors, poutine.scale(scale=kl_scale):
                    z = pyro.sample(f"z_{t}", q_z)  # (B, K, d)

    def _explain_away(self, x_t, loc, logvar, prior_loc, prior_logvar, cues=None):
        """``encoder="residual"``: the posterior's block k > 1 from its encoder's view of what
        blocks 1..k-1 draw at their posterior means (``decoder.explained``: x_t minus their
        layers, or minus their composite beside the unclaimed share); block 1 is
        ``loc``/``logvar``'s, from x_t. ``encoder="tracking"`` (``cues``: each block's
        ``_predicted_drawings``; ``loc``, ``logvar`` None): every block k, block 1 included
        (through ``self.encoder``), reads the same beside its own predicted drawing. Returns
        loc and log-variance (B, z_dim)."""
        size = self.z_dim // self.decoder.num_parts
        if cues is None:
            locs, logvars, first = [loc[:, :size]], [logvar[:, :size]], 1
            encoders = self.residual_encoders
        else:
            locs, logvars, first = [], [], 0
            encoders = [self.encoder, *self.residual_encoders]
        outputs = []  # the generators' outputs of blocks 1..k-1 at their posterior means
        for k, encoder in enumerate(encoders, first):
            with torch.no_grad(), _batchnorm_statistics_frozen(self.decoder):
                rest = (locs[0] if locs else x_t).new_zeros(x_t.shape[0], self.z_dim - k * size)
                means = torch.cat([*locs, rest], 1)
                if k == 0:  # nothing drawn yet: the rest (static background, or black) alone
                    empty = x_t.new_zeros(x_t.shape[0], 0, *self._generator_output(x_t))
                    drawn, scope = self.decoder.explained(empty)
                elif self.decoder.blocks_render_alone:  # render block k - 1 alone
                    outputs.append(self.decoder.generators(means, [k - 1]))
                    drawn, scope = self.decoder.explained(torch.cat(outputs, 1))
                else:  # a shared generator's BatchNorm pools the blocks: render them together
                    drawn, scope = self.decoder.explained(self.decoder.generators(means)[:, :k])
            reads = [x_t - drawn] + ([] if scope is None else [scope])
            h = encoder(torch.cat(reads + ([] if cues is None else [cues[k]]), 1))
            loc_k, logvar_k = self.posterior(h, prior_loc, prior_logvar)
            locs.append(loc_k[:, k * size : (k + 1) * size])
            logvars.append(logvar_k[:, k * size : (k + 1) * size])
        return torch.cat(locs, 1), torch.cat(logvars, 1)

    def _generator_output(self, x_t: torch.Tensor) -> tuple[int, int, int]:
        """(channels, H, W) of one block's generator output for frames like ``x_t``."""
        return (x_t.shape[1] + self.decoder.residual_extra_channels, *x_t.shape[-2:])

    def _predicted_drawings(self, x_t, prior_loc, predicted: bool) -> list[torch.Tensor]:
        """``encoder="tracking"``: what each block would draw alone (``decoder.explained`` of
        its output, over the static background if there is one) at the prior's predicted mean
        of its units, (B, C, H, W) each, without gradient; zeros at t = 1 (no prediction)."""
        if not predicted:
            return [torch.zeros_like(x_t)] * self.decoder.num_parts
        with torch.no_grad(), _batchnorm_statistics_frozen(self.decoder):
            ahead = self.decoder.generators(prior_loc)  # (B, K, C', H, W)
            return [
                self.decoder.explained(ahead[:, k : k + 1])[0]
                for k in range(self.decoder.num_parts)
            ]

    @contextmanager
    def sharing_predictions(self):
        """Within, each guide run computes p(z_t | z_{t-1}) once, with gradient, and the model
        replayed on that run's trace reuses it instead of evaluating the transition again.

        The model takes the shared prediction only for the very z_{t-1} tensor the guide
        computed it from, so a model replayed on another trace computes its own; the guide
        still reads the moments detached. The gradients are those of the two programs run
        apart (``tests/test_fast_step.py``); ``NegELBO`` evaluates the ELBO inside this.
        """
        self._shared = {}
        try:
            yield
        finally:
            self._shared = None

    def _prior(self, z_prev: torch.Tensor):
        """The model's p(z_t | z_{t-1}): the guide's shared prediction for this very tensor."""
        shared = self._shared.get(id(z_prev)) if self._shared is not None else None
        if shared is not None and shared[0] is z_prev:
            return shared[1]
        return self.transition(z_prev)

    def _prior_moments(self, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The guide's view of the prediction, (B, K, d) each: computed once for the model
        inside ``sharing_predictions``, else without gradient (the guide only reads it)."""
        if self._shared is None:
            with torch.no_grad():
                return self.transition.moments(z_prev)
        p, moments = self.transition.predict(z_prev)
        self._shared[id(z_prev)] = (z_prev, p)
        return moments


@contextmanager
def _batchnorm_statistics_frozen(module: nn.Module):
    """Within, BatchNorm layers of ``module`` in training mode still normalise by the batch
    but leave their running statistics as they were (momentum 0)."""
    norms = [
        m for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]  # fmt: skip
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    try:
        for m in norms:
            m.momentum = 0.0
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
