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

import math

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


class FactoredMLPTransition(Transition):
    """The paper's prior: factor k has its own MLP from z_{t-1}^k to a diagonal Gaussian.

    ``fixed_sd`` (beyond the paper): the Gaussian's standard deviation held at this value
    instead of learnt (the MLP's log-variance outputs are then unused), a prior that charges
    every departure from its prediction. ``capped`` (beyond the paper): the standard deviation
    learnt but at most the buffer ``sd_cap`` (saved with the model; set by the training loop's
    schedule, infinite until then); ``fixed_sd`` must then be None."""

    def __init__(
        self, num_factors: int, factor_dim: int, hidden: int = 128, num_hidden_layers: int = 3,
        fixed_sd: float | None = None, capped: bool = False,
    ):  # fmt: skip
        super().__init__(num_factors, factor_dim)
        self.mlp = FactoredMLP(num_factors, factor_dim, hidden, num_hidden_layers)
        if fixed_sd is not None and not fixed_sd > 0:
            raise ValueError(f"fixed_sd: must be > 0, got {fixed_sd}")
        if capped and fixed_sd is not None:
            raise ValueError("capped: a held sd (fixed_sd) has no cap")
        self.fixed_sd = fixed_sd
        self.register_buffer("sd_cap", torch.tensor(math.inf) if capped else None)

    def forward(self, z_prev: torch.Tensor) -> dist.Distribution:
        loc, logvar = self.moments(z_prev)
        return dist.Normal(loc, (0.5 * logvar).exp()).to_event(1)

    def moments(self, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, logvar = self.mlp(z_prev)
        if self.fixed_sd is not None:
            logvar = torch.full_like(logvar, 2 * math.log(self.fixed_sd))
        elif self.sd_cap is not None:
            logvar = torch.minimum(logvar, 2 * self.sd_cap.log())
        return loc, logvar


def factor_coupling(
    transition: Transition, z_prev: torch.Tensor, z_next: torch.Tensor
) -> dict[int, list[int]]:
    """Which other factors each factor's prediction reads, found by perturbing the past.

    For every factor j, z_prev (N, K, d) is perturbed in factor j only (standard-normal noise
    from the global RNG) and each other factor k's prediction is compared with the
    unperturbed one: its moments (:meth:`Transition.moments`) and its log-density at z_next
    (N, K, d). Returns {k: [j, ...]} for the factors k that moved, 1-based as in the reports;
    empty for a prior that keeps factors independent (the paper's) and for a single factor.
    A change below 1000 times the dtype's rounding of the values compared counts as none.
    """
    K = z_prev.shape[1]

    def prediction(z: torch.Tensor) -> list[torch.Tensor]:
        loc, logvar = transition.moments(z)  # (N, K, d) each
        return [loc, logvar, transition(z).log_prob(z_next).unsqueeze(-1)]  # log_prob: (N, K)

    base = prediction(z_prev)
    coupled: dict[int, list[int]] = {}
    for j in range(K):
        z = z_prev.clone()
        z[:, j] += torch.randn_like(z[:, j])
        moved = torch.zeros(K, dtype=torch.bool, device=z.device)  # per factor k
        for before, after in zip(base, prediction(z)):
            rounding = 1000 * torch.finfo(before.dtype).eps * before.abs().amax().clamp_min(1)
            changed = ((after - before).abs() > rounding) | (after.isnan() != before.isnan())
            moved |= changed.any(-1).any(0)  # (N, K, ·) -> (K,)
        for k in moved.nonzero().flatten().tolist():
            if k != j:
                coupled.setdefault(k + 1, []).append(j + 1)  # j ascends: lists come sorted
    return dict(sorted(coupled.items()))


def describe_coupling(coupled: dict[int, list[int]], num_factors: int) -> str:
    """One line for the report: ``independent``, or ``coupled (factor k reads factors ...)``."""
    if num_factors == 1:
        return "independent (a single factor: trivially, there is no other factor to read)"
    if not coupled:
        return (
            "independent (perturbing one factor's z_{t-1} moves no other factor's predicted "
            "moments or density)"
        )
    reads = "; ".join(
        f"factor {k} reads factor{'s' if len(js) > 1 else ''} {', '.join(map(str, js))}"
        for k, js in coupled.items()
    )
    return f"coupled ({reads}): the method assumes independent factors; allowed, not a failure"
