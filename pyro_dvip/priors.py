"""The transition prior p(z_t | z_{t-1}): the component users replace.

A prior is a small ``nn.Module`` subclass of :class:`Transition`:

    class MyPrior(Transition):
        def forward(self, z_prev):            # z_prev: (B, K, d)
            return dist.Normal(..., ...).to_event(1)   # batch (B, K), event (d,)

Pass the class (it is built with ``num_factors`` and ``factor_dim``) or an instance to
``DVIP(transition=...)``. The model samples ``z_t`` from ``forward(z_{t-1})``; the guide is
fed :meth:`Transition.moments` of the same prediction, detached (Appendix A).
"""

from __future__ import annotations

import torch
from pyro import distributions as dist
from torch import nn

from .networks import FactoredMLP


class Transition(nn.Module):
    """Interface of a transition prior over K factors of size d.

    Subclasses implement :meth:`forward`; they may override :meth:`initial` (p(z_1), N(0, I)
    by default) and :meth:`moments` (what the guide sees of the prediction).
    A prior that keeps factors independent lets factor k's distribution depend only on
    ``z_prev[:, k]``; nothing enforces it, so a coupled prior is possible and ``check_elbo``'s
    per-factor KL shows what it does.
    """

    def __init__(self, num_factors: int, factor_dim: int):
        super().__init__()
        self.num_factors = num_factors
        self.factor_dim = factor_dim

    def initial(self, batch_size: int, like: torch.Tensor) -> dist.Distribution:
        """p(z_1) = N(0, I) for every factor: batch (B, K), event (d,)."""
        zeros = like.new_zeros(batch_size, self.num_factors, self.factor_dim)
        return dist.Normal(zeros, 1.0).to_event(1)

    def forward(self, z_prev: torch.Tensor) -> dist.Distribution:
        """p(z_t | z_{t-1}) for z_prev (B, K, d): batch (B, K), event (d,)."""
        raise NotImplementedError

    def moments(self, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the prediction, each (B, K, d), as fed to the guide."""
        p = self(z_prev)
        return p.mean, p.variance.log()

    def predict(
        self, z_prev: torch.Tensor
    ) -> tuple[dist.Distribution, tuple[torch.Tensor, torch.Tensor]]:
        """``(self(z_prev), self.moments(z_prev))``, from one evaluation where the moments are
        read off the distribution (the default :meth:`moments`): the training step's guide
        computes the prediction once and hands it to the model (``DVIP.sharing_predictions``)."""
        p = self(z_prev)
        if type(self).moments is Transition.moments:
            return p, (p.mean, p.variance.log())
        return p, self.moments(z_prev)


class FactoredMLPTransition(Transition):
    """The paper's prior: factor k has its own MLP from z_{t-1}^k to a diagonal Gaussian."""

    def __init__(
        self, num_factors: int, factor_dim: int, hidden: int = 128, num_hidden_layers: int = 3
    ):
        super().__init__(num_factors, factor_dim)
        self.mlp = FactoredMLP(num_factors, factor_dim, hidden, num_hidden_layers)

    def forward(self, z_prev: torch.Tensor) -> dist.Distribution:
        return self.predict(z_prev)[0]

    def moments(self, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mlp(z_prev)

    def predict(self, z_prev):
        loc, logvar = self.moments(z_prev)
        return dist.Normal(loc, (0.5 * logvar).exp()).to_event(1), (loc, logvar)
