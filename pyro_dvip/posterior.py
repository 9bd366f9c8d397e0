"""A posterior that explains away, beyond the paper (``--encoder residual``; docs/model.md).

Block 1 of q(z_t | z_{t-1}, x_t) reads e(x_t) as the paper's does; block k > 1 reads, through
its own encoder, what blocks 1..k-1 do not draw, as MONet's attention does:

    r_t^k = x_t - sum_{j<k} sigmoid(g_j(m_t^j))        m_t^j: block j's posterior mean at t

(additive decoder; plus the static background's layer if there is one), or with a composite
decoder

    r_t^k = (x_t - sum_{j in R, j<k} w_j sigmoid(rgb_j),  w_R)      w = softmax over {R, j<k}

of the mask logits of blocks j < k beside a rest slot R (the static background's colour and
mask logit, or black at logit 0): the composite of what the blocks before k draw, and the
share of each pixel they leave unclaimed (MONet's scope) as one more input channel. Rendered
by the model's decoder without gradient and without touching its BatchNorm statistics,
through the paper's posterior head, of which it keeps block k. It is still
q(z_t | z_{t-1}, x_t): the m_t^j are functions of x_t and z_{t-1}.
"""

from __future__ import annotations

import torch
from torch import nn

from .decoders import PerFactorDecoder
from .networks import Encoder, Posterior, PosteriorHead
from .tricks import batchnorm_statistics_frozen


class ExplainingAway(Posterior):
    """The paper's ``head`` for block 1, and for block k > 1 ``encoders[k - 2]`` of what
    blocks before it leave unexplained, through the same head."""

    def __init__(self, head: PosteriorHead, encoders: list[Encoder]):
        super().__init__()
        self.head = head
        self.encoders = nn.ModuleList(encoders)

    def step(self, features, x_t, prior, decoder: PerFactorDecoder, seen=None):
        loc, logvar = self.head(features, *prior)
        B, z_dim = loc.shape
        size = z_dim // decoder.num_parts
        locs, logvars = [loc[:, :size]], [logvar[:, :size]]
        outputs = []  # the generators' outputs of blocks 1..k-1 at their posterior means
        for k, encoder in enumerate(self.encoders, 1):
            with torch.no_grad(), batchnorm_statistics_frozen(decoder):
                means = torch.cat([*locs, loc.new_zeros(B, z_dim - k * size)], 1)
                outputs.append(decoder.generators(means, [k - 1]))  # block k - 1 alone
                drawn, scope = decoder.explained(torch.cat(outputs, 1))
            reads = [x_t - drawn] + ([] if scope is None else [scope])
            loc_k, logvar_k = self.head(encoder(torch.cat(reads, 1)), *prior)
            locs.append(loc_k[:, k * size : (k + 1) * size])
            logvars.append(logvar_k[:, k * size : (k + 1) * size])
        return torch.cat(locs, 1), torch.cat(logvars, 1)
