"""Which Pyro estimators the objective offers, and the guide structure that decides it."""

import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceGraph_ELBO

from pyro_dvip import DVIP, NegELBO
from pyro_dvip.objective import make_elbo


def _tiny():
    torch.manual_seed(0)
    return DVIP(2, 3, image_size=16, width=4, transition_layers=1), torch.rand(4, 3, 3, 16, 16)


@pytest.mark.parametrize(
    "name", ["tracegraph", "TraceGraph_ELBO", "traceenum", "JitTraceEnum_ELBO", "tracetmc"]
)
def test_estimators_that_read_the_plates_are_refused_with_the_reason(name):
    message = (
        f"elbo: '{name}' is not supported: it reads the guide's plates, and the guide declares "
        "q(z_t^k | .) independent of the other factors' past"
    )
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_elbo(name)
    with pytest.raises(ValueError, match="use one of trace, meanfield"):
        NegELBO(_tiny()[0], name)


def test_an_unknown_estimator_names_the_choices():
    with pytest.raises(ValueError, match="elbo: must be one of trace, meanfield, got 'trcae'"):
        make_elbo("trcae")


def test_the_guide_posterior_of_one_factor_reads_the_other_factors_past():
    """The reason for the refusal: z_2^1 inside the `factors` plate, yet q(z_2^1 | .) moves when
    only z_1^2 changes; the model's p(z_2^1 | z_1^1) does not."""
    dvip, x = _tiny()
    dvip.eval()
    z1 = torch.randn(4, 2, 3)
    z1_other = z1.clone()
    z1_other[:, 1] += 3.0  # factor 2 only

    def z2(fn, z_1):
        trace = poutine.trace(poutine.condition(fn, data={"z_1": z_1})).get_trace(x)
        return trace.nodes["z_2"]["fn"].base_dist.loc  # (B, K, d)

    guide_a, guide_b = z2(dvip.guide, z1), z2(dvip.guide, z1_other)
    assert (guide_a[:, 0] - guide_b[:, 0]).abs().max() > 1e-3  # factor 1 moved
    model_a, model_b = z2(dvip.model, z1), z2(dvip.model, z1_other)
    torch.testing.assert_close(model_a[:, 0], model_b[:, 0])  # the prior's factor 1 did not
    assert (model_a[:, 1] - model_b[:, 1]).abs().max() > 1e-3


def test_tracegraph_would_add_nothing_here_every_site_is_reparameterised():
    """Why refusing it loses nothing: with no score-function term its gradient is Trace_ELBO's."""
    dvip, x = _tiny()
    grads = []
    for backward in (
        lambda: Trace_ELBO().differentiable_loss(dvip.model, dvip.guide, x).backward(),
        lambda: TraceGraph_ELBO().loss_and_grads(dvip.model, dvip.guide, x),  # backward inside
    ):
        torch.manual_seed(1)  # the same z samples
        dvip.zero_grad()
        backward()
        grads.append([p.grad.clone() for p in dvip.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
