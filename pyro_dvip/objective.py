"""The training objective: Pyro's ELBO estimators over ``DVIP.model`` and ``DVIP.guide``.

Pyro derives the bound of Appendix B from the model and guide; nothing here writes it by hand.
``NegELBO`` is an ``nn.Module`` (so DistributedDataParallel can wrap it) whose forward is the
negative ELBO per video from ``Trace_ELBO`` or ``TraceMeanField_ELBO``. The DVIP module owns
its parameters and a plain torch optimizer trains them: no global Pyro param store, so two
models in one process never share parameters by name.

Only these two estimators are offered. The guide samples z_t inside the model's ``factors``
plate (same sites, same shapes), which declares q(z_t^k | .) independent of the other factors'
past, but the posterior head reads all of z_{t-1} through a full Linear. Both estimators here
take every z_t by reparameterisation and never read that declared structure. Estimators whose
point is to read it (TraceGraph_ELBO's downstream costs for score-function terms, TraceEnum_ELBO
and TraceTMC_ELBO's plate-wise sums) would rely on a false statement: with every site
reparameterised and none discrete they add nothing here (TraceGraph_ELBO's gradient equals
Trace_ELBO's, tested), and for a site that is not they would be wrong. ``make_elbo`` refuses
them rather than let them look supported.
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch import nn
from torch.distributions import kl_divergence

from .model import DVIP

ELBO_CLASSES = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO}
# Pyro estimators that read the plates' conditional independence, which the guide overstates.
STRUCTURED_ELBOS = ("tracegraph", "traceenum", "tracetmc")


def make_elbo(name: str, num_particles: int = 1):
    """Trace_ELBO ("trace") or TraceMeanField_ELBO ("meanfield"); see the module docstring for
    why no other estimator is offered."""
    if name.lower().removeprefix("jit").removesuffix("_elbo") in STRUCTURED_ELBOS:
        raise ValueError(
            f"elbo: {name!r} is not supported: it reads the guide's plates, and the guide "
            "declares q(z_t^k | .) independent of the other factors' past although it reads all "
            f"of z_(t-1); use one of {', '.join(ELBO_CLASSES)} (pyro_dvip.objective explains)"
        )
    if name not in ELBO_CLASSES:
        raise ValueError(f"elbo: must be one of {', '.join(ELBO_CLASSES)}, got {name!r}")
    return ELBO_CLASSES[name](num_particles=num_particles, vectorize_particles=False)


def latent_sites(trace) -> list[str]:
    return [
        name
        for name, node in trace.nodes.items()
        if node["type"] == "sample" and not node["is_observed"] and name.startswith("z_")
    ]


def trace_terms(model_trace, guide_trace, analytic_kl: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction sum_t log p(x_t | z_t) and KL sum_t KL(q_t || p_t), each (B,), unscaled
    (:func:`factor_terms` with the KL summed over factors)."""
    recon, kl = factor_terms(model_trace, guide_trace, analytic_kl)
    return recon, kl.sum(-1)


def factor_terms(
    model_trace, guide_trace, analytic_kl: bool, per_step: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction sum_t log p(x_t | z_t) (B,) and each factor's KL sum_t KL(q_t || p_t)
    (B, K), unscaled; with ``per_step`` the KL is kept by step, (B, T, K), in site order.

    With ``analytic_kl`` the KL of each step is the closed form at the sampled z_{t-1} (what
    ``TraceMeanField_ELBO`` uses) where torch.distributions registers one; otherwise the
    single-sample log q(z_t) - log p(z_t) (what ``Trace_ELBO`` uses). Either way
    reconstruction - KL is the estimate the loss was built from.
    """
    x = model_trace.nodes["x"]
    recon = x["fn"].log_prob(x["value"]).sum(-1)  # (B, T) -> (B,)
    kls = [_kl(guide_trace.nodes[name], model_trace.nodes[name], analytic_kl)  # (B, K)
           for name in latent_sites(guide_trace)]  # fmt: skip
    kl = torch.stack(kls, 1)  # (B, T, K)
    if "a" in guide_trace.nodes:  # the appearance's KL (B, K), counted at t = 1
        kl = torch.cat([kl[:, :1] + _kl(guide_trace.nodes["a"], model_trace.nodes["a"],
                                         analytic_kl)[:, None], kl[:, 1:]], 1)  # fmt: skip
    return recon, kl if per_step else kl.sum(1)


def _kl(guide_node, model_node, analytic: bool) -> torch.Tensor:
    """KL(q || p) of one site, closed form where ``analytic`` and registered, else the
    single-sample log q - log p."""
    q, p, value = guide_node["fn"], model_node["fn"], guide_node["value"]
    if analytic:
        try:
            return kl_divergence(q, p)
        except NotImplementedError:  # a user prior with no registered KL: Monte Carlo
            pass
    return q.log_prob(value) - p.log_prob(value)


class NegELBO(nn.Module):
    """The training loss: -ELBO per video, estimated by Pyro's ``Trace_ELBO`` (default) or
    ``TraceMeanField_ELBO`` (analytic KL per step), for frames x (B, T, C, H, W)."""

    def __init__(self, dvip: DVIP, elbo: str = "trace"):
        super().__init__()
        self.dvip = dvip
        self.elbo_name = elbo
        self.elbo = make_elbo(elbo)

    def forward(self, x: torch.Tensor, kl_scale: float = 1.0, with_terms: bool = False):
        """-ELBO per video; with ``with_terms`` also the per-video reconstruction (B,) and each
        factor's KL (B, K) of the very sample the loss used, read from traces recorded inside
        Pyro's own run.
        (Both go through ``forward`` so that DistributedDataParallel syncs either.)"""
        if not with_terms:
            loss = self.elbo.differentiable_loss(self.dvip.model, self.dvip.guide, x, kl_scale)
            return loss / x.shape[0]
        model = poutine.trace(self.dvip.model)
        guide = poutine.trace(self.dvip.guide)
        loss = self.elbo.differentiable_loss(model, guide, x, kl_scale) / x.shape[0]
        recon, kl = factor_terms(model.trace, guide.trace, self.elbo_name == "meanfield")
        return loss, recon.detach(), kl.detach()

    def forward_with_terms(
        self, x: torch.Tensor, kl_scale: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``forward(x, kl_scale, with_terms=True)``: loss, reconstruction (B,), and each
        factor's KL (B, K), both unscaled sums over the sequence."""
        return self(x, kl_scale, with_terms=True)


@torch.no_grad()
def test_elbo(dvip: DVIP, frames: torch.Tensor, batch_size: int, seed: int = 0) -> float:
    """ELBO per frame on held-out sequences (B, T, C, H, W): eval-mode networks, analytic KL,
    one posterior sample per sequence under a fixed seed (so checkpoints compare)."""
    was_training = dvip.training
    dvip.eval()
    total = 0.0
    devices = [frames.device] if frames.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(frames), batch_size):
            x = frames[start : start + batch_size]
            guide = poutine.trace(dvip.guide).get_trace(x)
            model = poutine.trace(poutine.replay(dvip.model, trace=guide)).get_trace(x)
            recon, kl = trace_terms(model, guide, analytic_kl=True)
            total += (recon - kl).sum().item()
    dvip.train(was_training)
    return total / (frames.shape[0] * frames.shape[1])
