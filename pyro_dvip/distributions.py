"""The observation model's distribution: a Gaussian with one fixed variance for every pixel."""

from __future__ import annotations

import math

import torch
from pyro import distributions as dist


class FixedVarianceNormal(dist.Normal):
    """N(loc, variance I) for a float ``variance`` shared by every element of ``loc``.

    ``log_prob`` uses the scalar: ``Normal.log_prob`` would broadcast the scale to loc's shape
    and take its log and square element by element (a frame tensor's worth of work each step).
    """

    def __init__(self, loc: torch.Tensor, variance: float, validate_args=None):
        self.fixed_variance = float(variance)
        super().__init__(loc, math.sqrt(self.fixed_variance), validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_norm = 0.5 * math.log(2 * math.pi * self.fixed_variance)
        # In place on square's output: its backward needs only the difference.
        return torch.square(value - self.loc).mul_(-0.5 / self.fixed_variance).sub_(log_norm)

    def expand(self, batch_shape, _instance=None):
        return FixedVarianceNormal(
            self.loc.expand(batch_shape), self.fixed_variance, validate_args=False
        )
