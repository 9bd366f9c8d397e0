"""The test-set bound: ELBO per frame and per sequence, and an importance-weighted bound.

Both include the Gaussian normalising constant of p(x_t | z_t): every frame contributes
``-0.5 * C H W * log(2 pi obs_var)`` (reported as ``log_norm_const_per_frame``), as in the
authors' code and so in the paper's Table 2 numbers. Subtract it to compare with a bound
written without it.

- ``elbo``: reconstruction minus the analytic KL of each step at a posterior sample of
  z_{t-1} (what ``objective.test_elbo`` logs during training), averaged over sequences. Each
  particle is one posterior sample for every sequence; the standard error is over particles.
- ``iw_bound``: log (1/S) sum_s p(x, z_s) / q(z_s | x), z_s ~ q, per sequence, averaged over
  sequences (Burda et al.). It is at least the ELBO in expectation and tightens with S.

Per-frame values divide the per-sequence value by the sequence length T.

``kl_per_factor_per_frame`` splits the ELBO's KL by factor (nats per frame, averaged over
sequences and particles): a factor near 0 carries nothing (a collapsed factor, as when a digit
is dropped). It needs no ground truth, so it applies to real video too; it does not show
mixing (a factored run whose factors each held half of both digits had 4.14 and 4.90).

``kl_per_step_per_factor`` (T lists of K) is the same KL by time step, and
``prediction_saving`` (one per factor) is ``1 - mean_{t>=2} KL_t / KL_1``: the share of a
factor's per-frame cost that its own past removes. At t = 1 the prior is N(0, I), so KL_1 is
what a factor pays with nothing predicted; at t >= 2 it pays only what its transition failed
to predict. Near 0 means the transition predicts nothing (the model is a per-frame VAE and
nothing rewards independent factors); near 1 means the factor's future is almost free. It
needs no ground truth. A factor with KL_1 near 0 (collapsed) gets NaN.

``kl_per_unit_per_frame`` (K lists of d) is the analytic KL of each latent unit, nats per
frame, and ``active_units`` counts per factor the units above ``ACTIVE_NATS``: a unit that
costs no KL tells the decoder nothing about the frames. (Burda et al.'s test, the variance of
the posterior mean across inputs, miscounts in this model: on an unused unit the filter's mean
follows the prior's, which follows the sampled z_{t-1}, so it varies with no information.)
Both are absent (None) for a user prior whose KL torch.distributions cannot compute per unit.
"""

from __future__ import annotations

import math

import torch
from pyro import poutine
from torch.distributions import kl_divergence

from ..model import DVIP
from ..objective import factor_terms, latent_sites, trace_terms

ACTIVE_NATS = 0.05  # a unit costing less KL than this per frame carries (almost) nothing


def _base(d):
    while hasattr(d, "base_dist"):  # Independent / masked wrappers around the Normal
        d = d.base_dist
    return d


def unit_kl(model_trace, guide_trace) -> torch.Tensor | None:
    """Analytic KL of every latent unit summed over steps, (B, K, d); None where
    torch.distributions has no per-unit KL for the prior (a user prior)."""
    total = 0.0
    for name in latent_sites(guide_trace):
        q, p = _base(guide_trace.nodes[name]["fn"]), _base(model_trace.nodes[name]["fn"])
        try:
            kl = kl_divergence(q, p)
        except NotImplementedError:
            return None
        if kl.dim() != 3:  # not one value per unit: a prior with its own event structure
            return None
        total = total + kl
    return total


def _traces(dvip: DVIP, x: torch.Tensor):
    guide = poutine.trace(dvip.guide).get_trace(x)
    model = poutine.trace(poutine.replay(dvip.model, trace=guide)).get_trace(x)
    return model, guide


@torch.no_grad()
def held_out_bound(
    dvip: DVIP,
    frames: torch.Tensor,
    particles: int = 8,
    iw_samples: int = 16,
    batch_size: int = 256,
) -> dict:
    """ELBO (with s.e. over ``particles``) and the ``iw_samples``-sample bound on ``frames``
    (N, T, C, H, W), in nats; see the module docstring."""
    if particles < 2:
        raise ValueError(f"particles: need at least 2 for a standard error, got {particles}")
    if iw_samples < 1:
        raise ValueError(f"iw_samples: must be >= 1, got {iw_samples}")
    was_training = dvip.training
    dvip.eval()
    N, T = frames.shape[:2]
    elbo = torch.zeros(particles, N)  # per particle, per sequence
    step_kl = 0.0  # (T, K) summed over particles and sequences
    units: torch.Tensor | None = torch.zeros(())  # (K, d) summed likewise; None: unavailable
    iw = torch.zeros(N)
    for start in range(0, N, batch_size):
        x = frames[start : start + batch_size]
        end = start + len(x)
        for p in range(particles):
            traces = _traces(dvip, x)
            recon, kl = factor_terms(*traces, analytic_kl=True, per_step=True)
            per_unit = unit_kl(*traces) if units is not None else None
            units = None if per_unit is None else units + per_unit.sum(0).cpu()
            elbo[p, start:end] = (recon - kl.sum((1, 2))).cpu()  # kl: (B, T, K)
            step_kl = step_kl + kl.sum(0).cpu()
        log_w = torch.stack(
            [
                torch.sub(*trace_terms(*_traces(dvip, x), analytic_kl=False))
                for _ in range(iw_samples)
            ]
        )  # (S, B): log p(x, z_s) - log q(z_s)
        iw[start:end] = (log_w.logsumexp(0) - math.log(iw_samples)).cpu()
    dvip.train(was_training)
    per_particle = elbo.mean(1)  # (particles,) test-set ELBO per sequence
    elbo_seq = per_particle.mean().item()
    se_seq = (per_particle.std() / particles**0.5).item()
    pixels = frames[0, 0].numel()
    return {
        "seq_len": T,
        "sequences": N,
        "particles": particles,
        "iw_samples": iw_samples,
        "normalising_constant_included": True,
        "log_norm_const_per_frame": -0.5 * pixels * math.log(2 * math.pi * dvip.obs_var),
        "elbo_per_sequence": elbo_seq,
        "elbo_per_sequence_se": se_seq,
        "elbo_per_frame": elbo_seq / T,
        "elbo_per_frame_se": se_seq / T,
        "iw_bound_per_sequence": iw.mean().item(),
        "iw_bound_per_frame": iw.mean().item() / T,
        "kl_per_factor_per_frame": (step_kl.sum(0) / (particles * N * T)).tolist(),
        "kl_per_step_per_factor": (step_kl / (particles * N)).tolist(),
        "prediction_saving": prediction_saving(step_kl / (particles * N)).tolist(),
        **_active(None if units is None else units / (particles * N * T)),
    }


def _active(per_unit: torch.Tensor | None) -> dict:
    if per_unit is None:
        return {"kl_per_unit_per_frame": None, "active_units": None}
    return {
        "kl_per_unit_per_frame": per_unit.tolist(),
        "active_units": (per_unit > ACTIVE_NATS).sum(-1).tolist(),
        "active_nats": ACTIVE_NATS,
    }


def prediction_saving(step_kl: torch.Tensor, collapsed: float = 1e-3) -> torch.Tensor:
    """``1 - mean_{t>=2} KL_t / KL_1`` per factor from KL by step (T, K); NaN where KL_1 <
    ``collapsed`` nats or T < 2 (see the module docstring)."""
    if step_kl.shape[0] < 2:
        return torch.full(step_kl.shape[1:], float("nan"))
    first, later = step_kl[0], step_kl[1:].mean(0)
    saving = 1 - later / first.clamp_min(collapsed)
    return torch.where(first < collapsed, torch.full_like(saving, float("nan")), saving)
