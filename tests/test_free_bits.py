"""Free bits per factor: what --free-bits adds to the loss, and the gradient it leaves."""

import pyro
import pytest
import torch
from conftest import run_cli, tiny_args
from pyro import poutine

from pyro_dvip import DVIP, NegELBO
from pyro_dvip.config import TrainConfig
from pyro_dvip.objective import factor_terms, free_bits_penalty


def test_the_penalty_lifts_each_factors_batch_mean_kl_to_the_threshold():
    kl = torch.tensor([[1.0, 5.0], [3.0, 5.0]])  # (B=2, K=2): factor means 2 and 5
    assert free_bits_penalty(kl, 4.0).item() == pytest.approx(2.0)
    assert free_bits_penalty(kl, 1.5).item() == 0.0


def loss_and_grads(dvip, x, seed, **kwargs):
    """NegELBO(**kwargs) and the gradient of every parameter, under a fixed posterior sample."""
    kl_scale = kwargs.pop("kl_scale", 1.0)
    pyro.set_rng_seed(seed)
    dvip.zero_grad()
    loss, recon, kl = NegELBO(dvip, **kwargs).forward_with_terms(x, kl_scale)
    loss.backward()
    return loss.detach(), recon, kl, grads(dvip)


def grads(dvip):
    """Every parameter's gradient, zero where none reached it."""
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in dvip.parameters()]


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
def test_above_every_factors_kl_only_reconstruction_is_trained(elbo):
    torch.manual_seed(0)
    dvip = DVIP(2, 3, image_size=16, width=4)
    x = torch.rand(3, 4, 3, 16, 16)
    nats, scale = 1e3, 0.5  # far above any factor's KL per frame
    loss, recon, _, freed_grads = loss_and_grads(
        dvip, x, 1, elbo=elbo, free_bits=nats, kl_scale=scale
    )
    # -recon + scale * sum_k max(nats * T, KL_k): a constant K * nats * T in place of the KL
    torch.testing.assert_close(loss, -recon.mean() + scale * 2 * nats * 4, rtol=1e-6, atol=0.05)
    pyro.set_rng_seed(1)
    dvip.zero_grad()
    guide = poutine.trace(dvip.guide).get_trace(x, scale)
    model = poutine.trace(poutine.replay(dvip.model, trace=guide)).get_trace(x, scale)
    recon_only, _ = factor_terms(model, guide, analytic_kl=elbo == "meanfield")
    (-recon_only.mean()).backward()
    for a, b in zip(freed_grads, grads(dvip)):  # the prior's: ~1e-11 against none
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_below_every_factors_kl_the_gradient_is_the_elbos():
    torch.manual_seed(0)
    dvip = DVIP(2, 3, image_size=16, width=4)
    x = torch.rand(3, 4, 3, 16, 16)
    plain = loss_and_grads(dvip, x, 2, elbo="meanfield")
    freed = loss_and_grads(dvip, x, 2, elbo="meanfield", free_bits=1e-6)
    assert plain[2].min() > 2 * 1e-6 * 4  # analytic KL: each factor's is above the threshold
    torch.testing.assert_close(freed[0], plain[0])
    for a, b in zip(freed[3], plain[3]):
        torch.testing.assert_close(a, b)


def test_free_bits_is_validated_and_recorded(tmp_path):
    with pytest.raises(ValueError, match="free_bits: must be >= 0, got -1"):
        TrainConfig(free_bits=-1).validate()
    bad = run_cli("train", *tiny_args(steps=1), "--free-bits", "-1", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "Invalid value for '--free-bits'" in bad.output
    result = run_cli("train", *tiny_args(steps=2), "--free-bits", "0.5", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert TrainConfig.load(tmp_path / "r" / "config.json").free_bits == 0.5
