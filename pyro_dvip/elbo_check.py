"""Check that the bound Pyro optimises is the bound of Appendix B, for any transition prior.

The ELBO of a DVIP model on frames x (B, T, C, H, W) is computed three ways
(``shared/paper/math.md``; ``docs/derivation.md`` maps each term to its Pyro site):

1. **Hand-written**, from the networks and ``torch.distributions`` only (no Pyro ELBO class):

       ELBO = sum_t E_q[log p(x_t | z_t)]
              - sum_t E_{q(z_{t-1})} KL(q(z_t | z_{t-1}, x_t) || p(z_t | z_{t-1}))
       log p(x_t | z_t) = -||x_t - g(z_t)||^2 / (2 sigma_x^2) - (D / 2) log(2 pi sigma_x^2)
       KL(N(m, s^2) || N(mu, sigma^2))
              = 1/2 sum_i [log(sigma_i^2 / s_i^2) + (s_i^2 + (m_i - mu_i)^2) / sigma_i^2 - 1]

   with z_t = m_t + s_t eps_t, (m_t, log s_t^2) = h(e(x_t), prior moments at z_{t-1}) from
   Appendix A, D = C H W pixels and g the decoder. A prior that is not a diagonal Gaussian uses
   its KL registered with ``torch.distributions``, else the single-sample log q(z_t) - log p(z_t).
2. **Pyro's estimators**: ``Trace_ELBO`` over N independent particles (mean, standard error) and
   ``TraceMeanField_ELBO`` (closed-form KL per step).
3. **The trace decomposition**: the traces ``Trace_ELBO`` used, subsample sites pruned,
   ``compute_log_prob`` for the ``x`` site (reconstruction per video and step) and
   ``kl_divergence`` per ``z_t`` site (KL per video, step and factor: the ``factors`` plate).

Checks: on one shared guide sample (particle 0; the hand-written bound reuses its noise eps_t),
the reconstruction, KL, log p(z), log q(z) and ELBO of (1) and (3), ``Trace_ELBO``'s value for
that particle and the ELBO of ``TraceMeanField_ELBO`` must agree to a relative ``tolerance``
(against max(|a|, |b|); for an ELBO against the sum of its terms' sizes, what rounding acts
on); the hand-written expectation (N fresh samples) and ``Trace_ELBO``'s must agree within
``max_z`` standard errors. Everything runs on a copy of the model in eval mode (BatchNorm
uses its running statistics, so every network call is deterministic) and, by default, in
float64, where rounding sits near 1e-16 (float32: 1e-7), so a tolerance of 1e-5 can only be
missed by a wrong term.

``derivation`` selects deliberately wrong variants of (1) that the check must reject. The check
compares values, so it cannot see whether the guide detaches the prior's prediction (a gradient
matter; ``docs/derivation.md``). It also reports, without failing, whether the prior keeps
factors independent (:func:`factor_coupling`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd
import torch
from pyro import poutine
from pyro.poutine import Trace
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import Independent, Normal, kl_divergence

from .model import DVIP
from .objective import latent_sites, make_elbo
from .priors import describe_coupling, factor_coupling

DERIVATIONS = {
    "paper": "Appendix B as written",
    "drop-kl-t1": "deliberately wrong: leaves out KL(q(z_1 | x_1) || p(z_1))",
    "prior-wrong-step": "deliberately wrong: KL_t against p(z_t | z_t) instead of p(z_t | z_{t-1})",
    "drop-normaliser": "deliberately wrong: the likelihood without -(D/2) log(2 pi sigma_x^2)",
}
ANALYTIC, MONTE_CARLO = "analytic", "monte carlo"
CHECK_FORMATS = {
    "a": "{:.10g}".format, "b": "{:.10g}".format, "difference": "{:.3g}".format,
    "relative": "{:.3g}".format, "z": "{:.3g}".format, "tolerance": "{:g}".format,
}  # fmt: skip


@dataclass
class Terms:
    """The ELBO's terms for one posterior sample: ``recon`` log p(x_t | z_t) (B, T); ``kl`` the
    KL of step t and factor k (B, T, K); ``kl_methods`` how each step's KL was computed;
    ``log_p`` and ``log_q`` log p(z_t | z_{t-1}) and log q(z_t | z_{t-1}, x_t) at the sample
    (B, T, K), the terms ``Trace_ELBO`` sums instead of the KL."""

    recon: torch.Tensor
    kl: torch.Tensor
    kl_methods: list[str]
    log_p: torch.Tensor
    log_q: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        """sum_t log p(x_t | z_t) - sum_{t,k} KL_{t,k}, per video (B,)."""
        return self.recon.sum(-1) - self.kl.sum((-2, -1))


def gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, var: float, normalised: bool = True
) -> torch.Tensor:
    """log N(x_t | mean_t, var I), summed over the D pixels of each frame: (B, T, C, H, W) ->
    (B, T). ``normalised=False`` drops -(D/2) log(2 pi var) (a deliberately wrong variant)."""
    squared_error = (x - mean).pow(2).flatten(2).sum(-1)
    log_lik = -squared_error / (2 * var)
    if normalised:
        num_pixels = x[0, 0].numel()
        log_lik = log_lik - 0.5 * num_pixels * math.log(2 * math.pi * var)
    return log_lik


def gaussian_kl(
    q_loc: torch.Tensor, q_scale: torch.Tensor, p_loc: torch.Tensor, p_scale: torch.Tensor
) -> torch.Tensor:
    """KL(N(q_loc, q_scale^2) || N(p_loc, p_scale^2)) of diagonal Gaussians, summed over the last
    dim: 1/2 sum_i [log(p_i^2 / q_i^2) + (q_i^2 + (m_q,i - m_p,i)^2) / p_i^2 - 1]."""
    var_ratio = (q_scale / p_scale).pow(2)
    mahalanobis = ((q_loc - p_loc) / p_scale).pow(2)
    return 0.5 * (var_ratio + mahalanobis - 1 - var_ratio.log()).sum(-1)


def _diagonal_normal(p) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(loc, scale) if ``p`` is a diagonal Gaussian over the last dim, else None."""
    if (
        isinstance(p, Independent)
        and p.reinterpreted_batch_ndims == 1
        and isinstance(p.base_dist, Normal)
    ):
        return p.base_dist.loc, p.base_dist.scale
    return None


def _describe(p) -> str:
    """A distribution's kind, e.g. ``Independent(StudentT)``."""
    if isinstance(p, Independent):
        return f"{type(p).__name__}({type(p.base_dist).__name__})"
    return type(p).__name__


def _kl(q: Independent, p, z: torch.Tensor) -> tuple[torch.Tensor, str]:
    """KL(q || p) per video and factor (B, K) and how it was computed: the closed form for a
    diagonal Gaussian p, else a KL registered with torch.distributions, else log q(z) - log p(z)."""
    gaussian = _diagonal_normal(p)
    if gaussian is not None:
        return gaussian_kl(q.base_dist.loc, q.base_dist.scale, *gaussian), ANALYTIC
    try:
        return kl_divergence(q, p), ANALYTIC
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z), MONTE_CARLO


def hand_written_terms(
    dvip: DVIP,
    x: torch.Tensor,
    eps: torch.Tensor,
    derivation: str = "paper",
    eps_a: torch.Tensor | None = None,
) -> Terms:
    """Appendix B by hand for frames x (B, T, C, H, W) and standard-normal noise eps (T, B, K, d).

    The filtering posterior of Appendix A, step by step: q(z_t | z_{t-1}, x_t) = N(m_t, s_t^2)
    from the encoder features of x_t and the prior's predicted moments at z_{t-1} (zeros at
    t = 1); z_t = m_t + s_t eps_t; KL_t against p(z_t | z_{t-1}) (p(z_1) at t = 1); then the
    decoder on all z_t and the Gaussian likelihood. (m_t, log s_t^2) is the model's own
    posterior step (``dvip.posterior``: the paper's, or one that explains away): the bound of
    Appendix B holds for any q, and how the guide is wired is what its own tests check.

    A model with an appearance per factor (``dvip.appearance_dim``) adds its term after the
    last step: a = m_a + s_a eps_a (eps_a (B, K, A)) from q(a | x_{1:T}, z_{1:T}) and
    KL(q(a) || N(0, I)), as one more slice of ``kl``, ``log_p`` and ``log_q``; the decoder then
    draws every z_t with a.
    """
    B, T = x.shape[:2]
    K, d = dvip.num_factors, dvip.factor_dim
    features = x.new_zeros(B, T, 0)
    if dvip.posterior.reads_features:
        features = dvip.encoder(x.flatten(0, 1)).view(B, T, dvip.z_dim)
    zs, kls, methods, log_ps, log_qs = [], [], [], [], []
    z_prev, seen = None, dvip.posterior.start(x)
    for t in range(T):  # step t + 1 of the paper
        if t == 0:
            prior_loc = prior_logvar = x.new_zeros(B, dvip.z_dim)
            p = dvip.transition.initial(B, x)
        else:
            prior_loc, prior_logvar = (
                m.reshape(B, dvip.z_dim) for m in dvip.transition.moments(z_prev)
            )
            p = dvip.transition(z_prev)
        prior = (prior_loc, prior_logvar)
        loc, logvar = dvip.posterior.step(features[:, t], x[:, t], prior, dvip.decoder, seen)
        q = Independent(Normal(loc.view(B, K, d), (0.5 * logvar).exp().view(B, K, d)), 1)
        z = q.base_dist.loc + q.base_dist.scale * eps[t]  # (B, K, d)
        if derivation == "prior-wrong-step" and t > 0:
            p = dvip.transition(z)
        kl, method = _kl(q, p, z)  # (B, K)
        if derivation == "drop-kl-t1" and t == 0:
            kl = torch.zeros_like(kl)
        zs.append(z)
        kls.append(kl)
        methods.append(method)
        log_ps.append(p.log_prob(z))  # (B, K)
        log_qs.append(q.log_prob(z))
        z_prev, seen = z, dvip.posterior.see(seen, z, x[:, t])
    a = None
    if dvip.appearance_dim:
        moments = dvip.posterior.appearance(seen, dvip.decoder.gates())  # gates: or None
        loc, scale = (m.reshape(B, K, -1) for m in moments)
        q = Independent(Normal(loc, scale), 1)
        p = Independent(Normal(torch.zeros_like(loc), torch.ones_like(scale)), 1)
        a = loc + scale * eps_a  # (B, K, A)
        kl, method = _kl(q, p, a)
        kls.append(kl)
        methods.append(method)
        log_ps.append(p.log_prob(a))
        log_qs.append(q.log_prob(a))
    # a^k, one per sequence, at every t
    mean = dvip.render(torch.stack(zs, 1).reshape(B * T, dvip.z_dim), a).view(x.shape)
    recon = gaussian_log_likelihood(
        x, mean, dvip.obs_var, normalised=derivation != "drop-normaliser"
    )
    return Terms(
        recon, torch.stack(kls, 1), methods, torch.stack(log_ps, 1), torch.stack(log_qs, 1)
    )


def trace_decomposition(model_trace, guide_trace) -> Terms:
    """The ELBO's terms read site by site from a guide trace and the model replayed on it:
    ``x``'s log_prob (B, T) and, per ``z_t`` site (then the appearance ``a``, where the model
    has one), ``kl_divergence(q, p)`` (B, K), or
    log q(z_t) - log p(z_t) where no KL is registered (what ``TraceMeanField_ELBO`` does).
    ``recon`` and ``kl`` are unscaled: a ``kl_scale`` the traces were recorded with is not
    applied. ``log_p`` and ``log_q`` are each site's log-density as ``Trace_ELBO`` sums it,
    times the site's ``poutine.scale``, so a model and guide that scale ``z_t`` differently
    show here."""
    model_trace = prune_subsample_sites(model_trace)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    kls, methods, log_ps, log_qs = [], [], [], []
    for name in latent_sites(guide_trace) + (["a"] if "a" in guide_trace.nodes else []):
        q, p = guide_trace.nodes[name]["fn"], model_trace.nodes[name]["fn"]
        log_ps.append(model_trace.nodes[name]["log_prob"])  # (B, K), scaled
        log_qs.append(guide_trace.nodes[name]["log_prob"])
        try:
            kls.append(kl_divergence(q, p))
            methods.append(ANALYTIC)
        except NotImplementedError:
            log_q = guide_trace.nodes[name]["unscaled_log_prob"]
            kls.append(log_q - model_trace.nodes[name]["unscaled_log_prob"])
            methods.append(MONTE_CARLO)
    recon = model_trace.nodes["x"]["unscaled_log_prob"]  # (B, T)
    return Terms(
        recon, torch.stack(kls, 1), methods, torch.stack(log_ps, 1), torch.stack(log_qs, 1)
    )


def _noise_of(guide_trace, T: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The standard-normal noise eps_t = (z_t - m_t) / s_t behind a guide trace: (T, B, K, d),
    and the appearance's (B, K, A), or None where the model has none."""

    def noise(site):
        return (site["value"] - site["fn"].base_dist.loc) / site["fn"].base_dist.scale

    eps = torch.stack([noise(guide_trace.nodes[f"z_{t}"]) for t in range(1, T + 1)])
    return eps, noise(guide_trace.nodes["a"]) if "a" in guide_trace.nodes else None


def _exact_check(name: str, a: float, b: float, tolerance: float, scale: float | None = None):
    """A comparison on the shared sample: passes when |a - b| / scale <= tolerance, the scale
    max(|a|, |b|) unless given."""
    scale = max(abs(a), abs(b)) if scale is None else scale
    relative = 0.0 if a == b else abs(a - b) / scale
    return dict(check=name, a=a, b=b, difference=a - b, relative=relative, z=math.nan,
                tolerance=tolerance, passed=relative <= tolerance)  # fmt: skip


def _statistical_check(
    name: str, a: float, se_a: float, b: float, se_b: float, max_z: float
) -> dict:
    """A comparison of two independent means: passes when |a - b| <= max_z combined errors."""
    se = math.hypot(se_a, se_b)
    z = (a - b) / se if se > 0 else (0.0 if a == b else math.inf)
    return dict(check=name, a=a, b=b, difference=a - b, relative=math.nan, z=z,
                tolerance=max_z, passed=abs(z) <= max_z)  # fmt: skip


def _mean_and_se(values: list[float]) -> tuple[float, float]:
    v = torch.tensor(values, dtype=torch.float64)
    return v.mean().item(), (v.std() / math.sqrt(len(v))).item()


@dataclass
class ElboCheck:
    """The result of :func:`check_elbo`. ELBO values are nats per video (mean over the batch).

    Attributes:
        passed: every row of ``checks`` passed.
        checks: one row per comparison: the two values, their difference, the measure
            (relative difference, or z-score over standard errors), tolerance and outcome.
        estimates: each estimate of the ELBO (and of its reconstruction and KL parts), with
            its standard error where it is a mean over particles.
        steps: per step t, reconstruction and KL from the hand-written bound and from the trace
            on the shared sample, and how the KL was computed.
        factor_kl: KL per step (rows ``1..T``, then ``all``) and factor (columns), mean over the
            N particles and the batch: which factors carry information.
        notes: how the numbers were computed, in sentences.
        settings: batch size, sequence length, particles, dtype, seed, tolerances, derivation.
        coupling: {k: [j, ...]}, the other factors j whose z_{t-1} factor k's prediction reads
            (1-based; :func:`factor_coupling`); empty when the prior keeps factors independent.
            Reported, never a failure.
    """

    passed: bool
    checks: pd.DataFrame
    estimates: pd.DataFrame
    steps: pd.DataFrame
    factor_kl: pd.DataFrame
    notes: list[str]
    settings: dict = field(default_factory=dict)
    coupling: dict[int, list[int]] = field(default_factory=dict)

    @property
    def factors(self) -> str:
        """Whether the prior keeps factors independent, as the report's line says it."""
        return describe_coupling(self.coupling, self.factor_kl.shape[1])

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        return {
            "passed": self.passed,
            "settings": self.settings,
            "checks": self.checks.reset_index().to_dict(orient="records"),
            "estimates": self.estimates.reset_index().to_dict(orient="records"),
            "steps": self.steps.reset_index().to_dict(orient="records"),
            "factor_kl": {str(k): v for k, v in self.factor_kl.to_dict(orient="index").items()},
            "factors_independent": not self.coupling,
            "factor_coupling": {str(k): js for k, js in self.coupling.items()},
            "factors": self.factors,
            "notes": self.notes,
        }

    def format(self) -> str:
        """The report as text: settings, estimates, checks, per-step and per-factor tables."""
        s = self.settings
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            parts = [
                f"ELBO check: derivation {s['derivation']!r}, {s['batch_size']} videos x "
                f"{s['seq_len']} steps, {s['num_particles']} particles, {s['dtype']}, "
                f"seed {s['seed']}",
                "",
                "Estimates (nats per video):",
                self.estimates.to_string(float_format=lambda v: f"{v:.6g}", na_rep=""),
                "",
                "Checks:",
                self.checks.to_string(formatters=CHECK_FORMATS, na_rep=""),
                "",
                "Per step, shared sample:",
                self.steps.to_string(float_format=lambda v: f"{v:.6g}"),
                "",
                "KL per step and factor (mean over particles and videos):",
                self.factor_kl.to_string(float_format=lambda v: f"{v:.4g}"),
                "",
                *(f"note: {note}" for note in self.notes),
                f"factors: {self.factors}",
                f"verdict: {'PASS' if self.passed else 'FAIL'}",
            ]
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.format()


class _PyroParticle(NamedTuple):
    elbo: float  # Trace_ELBO's single-sample estimate, per video (mean over the batch)
    terms: Terms  # the decomposition of the very traces it used
    model_trace: Trace
    guide_trace: Trace


def _trace_elbo_particle(model: DVIP, x: torch.Tensor) -> _PyroParticle:
    """One ``Trace_ELBO`` estimate, recording the guide and model traces it was computed from."""
    traced_model, traced_guide = poutine.trace(model.model), poutine.trace(model.guide)
    elbo = -make_elbo("trace").loss(traced_model, traced_guide, x) / x.shape[0]
    terms = trace_decomposition(traced_model.trace, traced_guide.trace)
    return _PyroParticle(elbo, terms, traced_model.trace, traced_guide.trace)


def _transition_pairs(model: DVIP, particle: _PyroParticle) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_{t-1}, z_t) pairs of a guide sample, ((T - 1) B, K, d) each, for
    :func:`factor_coupling`; for T = 1, z_1 and a draw from the prior at it."""
    zs = [site["value"] for site in (particle.guide_trace.nodes[n]
                                     for n in latent_sites(particle.guide_trace))]  # fmt: skip
    if len(zs) == 1:
        return zs[0], model.transition(zs[0]).sample()
    return torch.cat(zs[:-1]), torch.cat(zs[1:])


def check_elbo(
    dvip: DVIP,
    x: torch.Tensor,
    num_particles: int = 100,
    *,
    derivation: str = "paper",
    dtype: torch.dtype = torch.float64,
    tolerance: float = 1e-5,
    max_z: float = 4.0,
    seed: int = 0,
) -> ElboCheck:
    """Check Pyro's ELBO of ``dvip`` on frames x (B, T, C, H, W) against Appendix B by hand.

    Args:
        dvip: the model; it is left untouched (the check runs on an eval-mode copy).
        x: frames in [0, 1] of the model's channels and image size.
        num_particles: N, posterior samples for ``Trace_ELBO`` and for the hand-written mean.
        derivation: ``"paper"`` or one of the deliberately wrong variants in ``DERIVATIONS``.
        dtype: precision of the copy the check runs in (float64 by default).
        tolerance: relative difference allowed on the shared sample.
        max_z: standard errors allowed between the hand-written and ``Trace_ELBO`` means.
        seed: seed of the posterior noise; the global RNG state is restored afterwards.
    """
    if x.dim() != 5 or tuple(x.shape[2:]) != (dvip.channels, dvip.image_size, dvip.image_size):
        shape = f"(B, T, {dvip.channels}, {dvip.image_size}, {dvip.image_size})"
        raise ValueError(f"x: expected frames of shape {shape}, got {tuple(x.shape)}")
    if num_particles < 2:
        raise ValueError(f"num_particles: must be >= 2 for a standard error, got {num_particles}")
    if derivation not in DERIVATIONS:
        raise ValueError(f"derivation: must be one of {', '.join(DERIVATIONS)}, got {derivation!r}")
    if derivation == "prior-wrong-step" and x.shape[1] < 2:
        raise ValueError("seq_len: 'prior-wrong-step' differs from the paper only for T >= 2")
    model = copy.deepcopy(dvip).to(dtype).eval()
    x = x.to(device=next(model.parameters()).device, dtype=dtype)
    B, T = x.shape[:2]
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        pyro_particles = [_trace_elbo_particle(model, x) for _ in range(num_particles)]
        shared = pyro_particles[0]  # the one sample all exact comparisons share
        eps, eps_a = _noise_of(shared.guide_trace, T)
        shared_hand = hand_written_terms(model, x, eps, derivation, eps_a)
        replayed_guide = poutine.replay(model.guide, trace=shared.guide_trace)
        meanfield = -float(make_elbo("meanfield").loss(model.model, replayed_guide, x)) / B
        eps_shape = (T, B, model.num_factors, model.factor_dim)
        a_shape = (B, model.num_factors, model.appearance_dim)
        hand = [
            hand_written_terms(model, x, torch.randn(eps_shape, dtype=dtype, device=x.device),
                               derivation, torch.randn(a_shape, dtype=dtype, device=x.device)
                               if model.appearance_dim else None)
            for _ in range(num_particles)
        ]  # fmt: skip
        coupling = factor_coupling(model.transition, *_transition_pairs(model, shared))

    def per_video(values: torch.Tensor) -> float:
        return values.mean().item()

    hand_mean, hand_se = _mean_and_se([per_video(h.elbo) for h in hand])
    trace_mean, trace_se = _mean_and_se([p.elbo for p in pyro_particles])
    hand_recon = per_video(shared_hand.recon.sum(-1))
    hand_kl = per_video(shared_hand.kl.sum((1, 2)))
    trace_recon = per_video(shared.terms.recon.sum(-1))
    trace_kl = per_video(shared.terms.kl.sum((1, 2)))
    hand_elbo, trace_elbo = per_video(shared_hand.elbo), per_video(shared.terms.elbo)
    elbo_scale = abs(hand_recon) + abs(hand_kl)  # rounding scales with the terms, not their sum
    hand_log_p = per_video(shared_hand.log_p.sum((1, 2)))
    hand_log_q = per_video(shared_hand.log_q.sum((1, 2)))
    trace_log_p = per_video(shared.terms.log_p.sum((1, 2)))
    trace_log_q = per_video(shared.terms.log_q.sum((1, 2)))
    checks = pd.DataFrame(
        [
            _exact_check("reconstruction, shared sample: hand-written vs trace",
                         hand_recon, trace_recon, tolerance),
            _exact_check("KL, shared sample: hand-written vs trace", hand_kl, trace_kl, tolerance),
            _exact_check("log p(z), shared sample: hand-written vs Trace_ELBO's model trace",
                         hand_log_p, trace_log_p, tolerance),
            _exact_check("log q(z), shared sample: hand-written vs Trace_ELBO's guide trace",
                         hand_log_q, trace_log_q, tolerance),
            _exact_check("ELBO, shared sample: hand-written vs trace",
                         hand_elbo, trace_elbo, tolerance, elbo_scale),
            _exact_check("ELBO, shared sample: hand-written log p - log q vs Trace_ELBO",
                         hand_recon + hand_log_p - hand_log_q, shared.elbo, tolerance,
                         abs(hand_recon) + abs(hand_log_p) + abs(hand_log_q)),
            _exact_check("ELBO, shared sample: hand-written vs TraceMeanField_ELBO",
                         hand_elbo, meanfield, tolerance, elbo_scale),
            _statistical_check(f"ELBO, mean of {num_particles}: hand-written vs Trace_ELBO",
                               hand_mean, hand_se, trace_mean, trace_se, max_z),
        ]
    ).set_index("check")  # fmt: skip

    nan = math.nan
    estimates = pd.DataFrame(
        [
            ("hand-written, shared sample", hand_elbo, nan, hand_recon, hand_kl),
            ("trace decomposition, shared sample", trace_elbo, nan, trace_recon, trace_kl),
            ("TraceMeanField_ELBO, shared sample", meanfield, nan, nan, nan),
            (f"hand-written, mean of {num_particles}", hand_mean, hand_se,
             per_video(torch.stack([h.recon.sum(-1) for h in hand])),
             per_video(torch.stack([h.kl.sum((1, 2)) for h in hand]))),
            (f"Trace_ELBO, mean of {num_particles}", trace_mean, trace_se, nan, nan),
        ],
        columns=["estimate", "elbo", "se", "recon", "kl"],
    ).set_index("estimate")  # fmt: skip

    rows = [*range(1, T + 1)] + (["a"] if model.appearance_dim else [])
    no_recon = [math.nan] * (len(rows) - T)  # the appearance has a KL and no frame
    steps = pd.DataFrame(
        {
            "recon_hand": shared_hand.recon.mean(0).tolist() + no_recon,
            "recon_trace": shared.terms.recon.mean(0).tolist() + no_recon,
            "kl_hand": shared_hand.kl.sum(-1).mean(0).tolist(),
            "kl_trace": shared.terms.kl.sum(-1).mean(0).tolist(),
            "kl_method": shared.terms.kl_methods,
        },
        index=pd.Index(rows, name="t"),
    )

    kl_per_factor = torch.stack([p.terms.kl for p in pyro_particles]).mean((0, 1))  # (T, K)
    factor_kl = pd.DataFrame(
        torch.cat([kl_per_factor, kl_per_factor.sum(0, keepdim=True)]).tolist(),
        index=pd.Index([*map(str, rows), "all"], name="step"),
        columns=[f"factor {k}" for k in range(1, model.num_factors + 1)],
    )

    dtype_name = str(dtype).removeprefix("torch.")
    notes = [
        "networks in eval mode (BatchNorm running statistics), so repeated calls are "
        f"deterministic; computed on a {dtype_name} copy of the model",
        "shared sample: Trace_ELBO's particle 0; the hand-written bound reuses its noise eps_t "
        "and TraceMeanField_ELBO replays it; relative differences are taken against "
        "max(|a|, |b|), for an ELBO against the sum of its terms' sizes (|recon| + |KL|, or "
        "|recon| + |log p| + |log q|)",
    ]
    monte_carlo = [t for t, m in enumerate(shared.terms.kl_methods, 1) if m == MONTE_CARLO]
    if monte_carlo:
        site = f"z_{monte_carlo[0]}"
        q, p = shared.guide_trace.nodes[site]["fn"], shared.model_trace.nodes[site]["fn"]
        notes.append(
            f"no analytic KL is registered for KL({_describe(q)} || {_describe(p)}): the KL of "
            f"steps {', '.join(map(str, monte_carlo))} is the Monte Carlo estimate "
            "log q(z_t) - log p(z_t) at the sampled z_t, in all three computations"
        )
    if derivation != "paper":
        notes.append(f"derivation {derivation!r}: {DERIVATIONS[derivation]}")
    settings = dict(
        derivation=derivation, batch_size=B, seq_len=T, num_particles=num_particles,
        dtype=dtype_name, seed=seed, tolerance=tolerance, max_z=max_z,
    )  # fmt: skip
    passed = bool(checks["passed"].all())
    return ElboCheck(passed, checks, estimates, steps, factor_kl, notes, settings, coupling)
