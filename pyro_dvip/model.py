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

Two options beyond the paper replace a network and keep the sites, plates and bound: the
decoder g (a :class:`~pyro_dvip.networks.FrameDecoder`: the per-factor decoders of
``decoders.py``), and the posterior's h (a :class:`~pyro_dvip.networks.Posterior`:
``encoder="residual"`` explains away, ``posterior.py``).

One option beyond the paper adds a site (``encoder="glimpse"`` with a decoder that reads an
appearance, ``glimpse.py``): each factor's appearance a^k ~ N(0, I), drawn once per sequence,

    p(x_{1:T}, z_{1:T}, a) = p(a) prod_t p(x_t | z_t, a) p(z_t | z_{t-1})

site ``a`` (value (B, K, A), batch (B, K) inside the ``videos`` and ``factors`` plates and
outside ``pyro.markov``, after the steps in model and guide alike); the guide draws it from
q(a | x_{1:T}, z_{1:T}).
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro import distributions as dist
from pyro import poutine
from torch import nn

from .decoders import PerFactorDecoder
from .distributions import FixedVarianceNormal
from .glimpse import GlimpseDecoder, GlimpsePosterior
from .networks import Decoder, Encoder, FrameDecoder, PosteriorHead
from .posterior import ExplainingAway
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
        decoder: g, a :class:`FrameDecoder`, or a callable with no arguments that builds one
            (called where the paper's decoder is built, so the other networks draw the same
            initial weights); default the paper's.
        encoder: "paper", "residual" (explaining away; needs a ``PerFactorDecoder`` of at
            least 2 parts) or "glimpse" (what and where; needs a ``GlimpseDecoder``).
        residual_width: channel multiplier of the residual encoders (default ``width``).
        glimpse_match: with the glimpse encoder, "ncc", "residual" or "visible": how a
            factor's drawing so far pulls its position (:class:`GlimpsePosterior`).
        guide_previous: with the glimpse encoder, the guide's other units also read the
            factor's own state at t - 1 (beyond the recipe; :class:`GlimpsePosterior`).
        glimpse_window: with the glimpse encoder, a position is read from the candidates
            within this many pixels of the best-scoring one (beyond the recipe; None: all).
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
        decoder: FrameDecoder | Callable[[], FrameDecoder] | None = None,
        encoder: str = "paper",
        residual_width: int | None = None,
        glimpse_match: str = "ncc",
        guide_previous: bool = False,
        glimpse_window: int | None = None,
    ):
        super().__init__()
        for name, value in [("num_factors", num_factors), ("factor_dim", factor_dim)]:
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if not obs_var > 0:
            raise ValueError(f"obs_var must be > 0, got {obs_var}")
        self.num_factors, self.factor_dim = num_factors, factor_dim
        self.z_dim = num_factors * factor_dim
        self.channels, self.image_size = channels, image_size
        self.obs_var = float(obs_var)
        self.transition = _transition(transition, num_factors, factor_dim, transition_layers)
        self.encoder = Encoder(channels, image_size, self.z_dim, width, encoder_linear_act)
        self.posterior = PosteriorHead(self.z_dim)
        decoder = Decoder(channels, image_size, self.z_dim, width) if decoder is None else decoder
        self.decoder = decoder if isinstance(decoder, nn.Module) else decoder()
        if not isinstance(self.decoder, FrameDecoder) or self.decoder.z_dim != self.z_dim:
            raise ValueError(f"decoder: must be a FrameDecoder of z_dim {self.z_dim}")
        if encoder == "residual":
            if not isinstance(self.decoder, PerFactorDecoder) or self.decoder.num_parts < 2:
                raise ValueError(
                    "encoder: residual needs a per-factor decoder of 2 parts or more "
                    "(--decoder additive or composite, --factors >= 2)"
                )
            reads = channels + self.decoder.scope_channels  # what block k leaves, (its scope)
            self.posterior = ExplainingAway(
                self.posterior,
                [
                    Encoder(
                        reads, image_size, self.z_dim, residual_width or width, encoder_linear_act
                    )
                    for _ in range(self.decoder.num_parts - 1)
                ],
            )  # fmt: skip  (built last: the paper's networks draw the same initial weights)
            self.register_load_state_dict_pre_hook(_saved_before_explaining_away_module)
        elif encoder == "glimpse":
            if not isinstance(self.decoder, GlimpseDecoder):
                raise ValueError("encoder: glimpse needs the glimpse decoder (--decoder glimpse)")
            d = self.decoder  # its parts, also when the prior is one entangled factor
            self.posterior = GlimpsePosterior(d.num_parts, d.part_dim, channels, image_size,
                                              d.appearance_dim, d.glimpse_size, width,
                                              match=glimpse_match,
                                              previous=guide_previous,
                                              window=glimpse_window)  # fmt: skip
        elif encoder != "paper":
            raise ValueError(f"encoder: must be one of paper, residual, glimpse, got {encoder!r}")
        if residual_width is not None and encoder != "residual":
            raise ValueError("residual_width: applies to encoder 'residual' only")
        if glimpse_match != "ncc" and encoder != "glimpse":
            raise ValueError("glimpse_match: applies to encoder 'glimpse' only")
        if guide_previous and encoder != "glimpse":
            raise ValueError("guide_previous: applies to encoder 'glimpse' only")
        if glimpse_window is not None and encoder != "glimpse":
            raise ValueError("glimpse_window: applies to encoder 'glimpse' only")
        if self.decoder.appearance_dim and encoder != "glimpse":
            raise ValueError("decoder: one that reads an appearance needs encoder 'glimpse'")
        # a^k of each of the prior's factors: the appearances of the decoder's parts it holds
        self.appearance_dim = self.decoder.appearance_dim * self.decoder.num_parts // num_factors

    def model(self, x: torch.Tensor, kl_scale: float = 1.0) -> None:
        """p(x_{1:T}, z_{1:T}); x: (B, T, C, H, W) in [0, 1]. ``kl_scale`` anneals the latents."""
        B, T = x.shape[:2]
        zs = []
        factors = pyro.plate("factors", self.num_factors, dim=-1)
        with pyro.plate("videos", B, dim=-2):
            z = None
            for t in pyro.markov(range(1, T + 1)):
                p_z = self.transition.initial(B, x) if t == 1 else self.transition(z)
                with factors, poutine.scale(scale=kl_scale):
                    z = pyro.sample(f"z_{t}", p_z)  # (B, K, d)
                zs.append(z)
            a = None
            if self.appearance_dim:  # beyond the paper: one appearance per factor and sequence
                with factors, poutine.scale(scale=kl_scale):
                    a = pyro.sample("a", self.appearance_prior(x))  # (B, K, A)
            z_all = torch.stack(zs, 1).reshape(B * T, self.z_dim)
            mean = self.render(z_all, a).view(x.shape)  # (B, T, C, H, W); a^k at every t
            with pyro.plate("steps", T, dim=-1):
                pyro.sample("x", FixedVarianceNormal(mean, self.obs_var).to_event(3), obs=x)

    def guide(self, x: torch.Tensor, kl_scale: float = 1.0) -> None:
        """q(z_{1:T} | x_{1:T}) = prod_t q(z_t | z_{t-1}, x_t); same arguments as ``model``."""
        B, T = x.shape[:2]
        features = x.new_zeros(B, T, 0)  # the glimpse guide reads glimpses instead
        if self.posterior.reads_features:
            features = self.encoder(x.flatten(0, 1)).view(B, T, self.z_dim)  # e(x_t), every t
        factors = pyro.plate("factors", self.num_factors, dim=-1)
        with pyro.plate("videos", B, dim=-2):
            z, seen = None, self.posterior.start(x)  # seen: the glimpse guide's, else None
            for t in pyro.markov(range(1, T + 1)):
                prior = self.predicted_moments(z, x)  # detached: trained by the model's KL
                loc, logvar = self.posterior.step(features[:, t - 1], x[:, t - 1], prior,
                                                  self.decoder, seen)  # fmt: skip
                q_z = dist.Normal(
                    loc.view(B, self.num_factors, self.factor_dim),
                    (0.5 * logvar).exp().view(B, self.num_factors, self.factor_dim),
                ).to_event(1)
                with factors, poutine.scale(scale=kl_scale):
                    z = pyro.sample(f"z_{t}", q_z)  # (B, K, d)
                seen = self.posterior.see(seen, z, x[:, t - 1])
            if self.appearance_dim:  # q(a | x_{1:T}, z_{1:T}), from what the guide saw
                with factors, poutine.scale(scale=kl_scale):
                    loc, scale = (m.reshape(B, self.num_factors, -1)
                                  for m in self.posterior.appearance(
                                      seen, self.decoder.gates()))  # fmt: skip
                    pyro.sample("a", dist.Normal(loc, scale).to_event(1))  # (B, K, A)

    def render(self, z: torch.Tensor, appearance: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x_t | z_t, a): z (N, z_dim), appearance (N, K, A) for a model that
        has one (as the site ``a`` holds it), else None; or (n, K, A), one per sequence, when
        z holds n sequences' N / n steps in sequence order."""
        if appearance is None:
            return self.decoder(z)
        return self.decoder(z, self._parts_appearance(appearance))

    def parts(self, z: torch.Tensor, appearance: torch.Tensor | None = None) -> dict:
        """What each of the decoder's parts draws (``FrameDecoder.parts``), as ``render``."""
        if appearance is None:
            return self.decoder.parts(z)
        return self.decoder.parts(z, self._parts_appearance(appearance))

    def visible_changes(self, z: torch.Tensor, appearance: torch.Tensor | None = None):
        """How far what each decoder part shows is from the background it covers (N, K, H,
        W), as ``parts`` reads its arguments; None for a decoder that does not say."""
        if not hasattr(self.decoder, "visible_changes"):
            return None
        if appearance is None:
            return self.decoder.visible_changes(z)
        return self.decoder.visible_changes(z, self._parts_appearance(appearance))

    def _parts_appearance(self, appearance: torch.Tensor) -> torch.Tensor:
        """The appearance (n, K', A') of the prior's factors as its decoder's parts read it,
        (n, parts, A): an entangled prior's one factor holds every part's."""
        return appearance.reshape(len(appearance), self.decoder.num_parts, -1)

    def appearance_prior(self, x: torch.Tensor) -> dist.Distribution:
        """p(a^k) = N(0, I), batch (B, K), event (A,)."""
        zeros = x.new_zeros(x.shape[0], self.num_factors, self.appearance_dim)
        return dist.Normal(zeros, 1.0).to_event(1)

    def predicted_moments(self, z_prev: torch.Tensor | None, x: torch.Tensor):
        """The prior's predicted loc and log-variance at z_{t-1} (B, K, d), as the posterior
        reads them: (B, z_dim) each, without gradient (Appendix A), zeros at t = 1 (None)."""
        B = x.shape[0]
        if z_prev is None:
            zeros = x.new_zeros(B, self.z_dim)
            return zeros, zeros
        with torch.no_grad():
            return tuple(m.reshape(B, self.z_dim) for m in self.transition.moments(z_prev))


def _transition(transition, num_factors: int, factor_dim: int, layers: int) -> Transition:
    """The prior p(z_t | z_{t-1}): the paper's MLP, a user's class or instance."""
    if transition is None:
        return FactoredMLPTransition(num_factors, factor_dim, num_hidden_layers=layers)
    if isinstance(transition, type):
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
    return transition


def _saved_before_explaining_away_module(module, state_dict, prefix, *_) -> None:
    """Checkpoints saved before ``ExplainingAway`` held the head as ``posterior.*`` and the
    block encoders as ``residual_encoders.*``: read them under today's names."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        name = key[len(prefix) :]
        if name.startswith("residual_encoders."):
            state_dict[prefix + "posterior.encoders." + name[18:]] = state_dict.pop(key)
        elif name.startswith("posterior.") and not name.startswith(
            ("posterior.head.", "posterior.encoders.")
        ):
            state_dict[prefix + "posterior.head." + name[10:]] = state_dict.pop(key)  # fmt: skip
