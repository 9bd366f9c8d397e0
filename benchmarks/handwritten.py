"""The baseline the benchmark measures Pyro against: the same ELBO written by hand in PyTorch.

Same networks, same batching (encoder and decoder once over all B T frames), analytic
Gaussian KL per step at the sampled z_{t-1}, the prior's moments fed to the posterior
detached: the objective ``TraceMeanField_ELBO`` derives from ``DVIP.model`` and
``DVIP.guide``, without Pyro. It computes the transition once per step, where the Pyro
path computes it in the guide (no grad) and again in the model.
"""

from __future__ import annotations

import math

import torch

from pyro_dvip import DVIP, FactoredMLPTransition


def handwritten_loss(dvip: DVIP, x: torch.Tensor) -> torch.Tensor:
    """-ELBO per video for frames x (B, T, C, H, W), the paper's prior only."""
    if not isinstance(dvip.transition, FactoredMLPTransition):
        raise TypeError("the hand-written baseline covers the paper's factored MLP prior only")
    B, T = x.shape[:2]
    K, d, z_dim = dvip.num_factors, dvip.factor_dim, dvip.z_dim
    features = dvip.encoder(x.flatten(0, 1)).view(B, T, z_dim)
    p_loc = p_logvar = features.new_zeros(B, K, d)  # p(z_1) = N(0, I)
    kl = features.new_zeros(B)
    zs = []
    for t in range(T):
        if t > 0:
            p_loc, p_logvar = dvip.transition.mlp(zs[-1])  # (B, K, d) each
        q_loc, q_logvar = dvip.posterior(
            features[:, t], p_loc.detach().reshape(B, z_dim), p_logvar.detach().reshape(B, z_dim)
        )
        q_loc, q_logvar = q_loc.view(B, K, d), q_logvar.view(B, K, d)
        zs.append(q_loc + (0.5 * q_logvar).exp() * torch.randn_like(q_loc))
        kl = kl + 0.5 * (
            p_logvar - q_logvar + (q_logvar.exp() + (q_loc - p_loc).pow(2)) / p_logvar.exp() - 1
        ).sum((1, 2))
    mean = dvip.decoder(torch.stack(zs, 1).reshape(B * T, z_dim)).view(x.shape)
    num_values = x[0].numel()  # T C H W
    recon = -0.5 * (x - mean).pow(2).flatten(1).sum(1) / dvip.obs_var - 0.5 * num_values * math.log(
        2 * math.pi * dvip.obs_var
    )
    return -(recon - kl).mean()
