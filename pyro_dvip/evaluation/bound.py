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
"""

from __future__ import annotations

import math

import torch
from pyro import poutine

from ..model import DVIP
from ..objective import factor_terms, trace_terms


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
    iw = torch.zeros(N)
    for start in range(0, N, batch_size):
        x = frames[start : start + batch_size]
        end = start + len(x)
        for p in range(particles):
            recon, kl = factor_terms(*_traces(dvip, x), analytic_kl=True, per_step=True)
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
    }


def prediction_saving(step_kl: torch.Tensor, collapsed: float = 1e-3) -> torch.Tensor:
    """``1 - mean_{t>=2} KL_t / KL_1`` per factor from KL by step (T, K); NaN where KL_1 <
    ``collapsed`` nats or T < 2 (see the module docstring)."""
    if step_kl.shape[0] < 2:
        return torch.full(step_kl.shape[1:], float("nan"))
    first, later = step_kl[0], step_kl[1:].mean(0)
    saving = 1 - later / first.clamp_min(collapsed)
    return torch.where(first < collapsed, torch.full_like(saving, float("nan")), saving)
