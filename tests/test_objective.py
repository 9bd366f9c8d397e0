import math

import pyro
import pytest
import torch
from conftest import make_known_answer, unit_kl_to_standard_normal
from pyro import distributions as dist
from pyro import poutine
from torch.distributions import Normal, kl_divergence

from pyro_dvip import DVIP, NegELBO
from pyro_dvip.objective import test_elbo as held_out_elbo

B, T, S = 3, 3, 16
TINY_MODEL = dict(image_size=S, width=4, transition_layers=1)


def frames(b=B, t=T, seed=1):
    return torch.rand(b, t, 3, S, S, generator=torch.Generator().manual_seed(seed))


class UndetachedGuide(DVIP):
    """``DVIP.guide`` without ``torch.no_grad`` around the prior's prediction: a mutant whose
    values are the paper's but whose gradients let the guide train the transition."""

    def guide(self, x, kl_scale=1.0):
        B, T = x.shape[:2]
        features = self.encoder(x.flatten(0, 1)).view(B, T, self.z_dim)
        factors = pyro.plate("factors", self.num_factors, dim=-1)
        with pyro.plate("videos", B, dim=-2):
            z = None
            for t in pyro.markov(range(1, T + 1)):
                if t == 1:
                    prior_loc = prior_logvar = features.new_zeros(B, self.z_dim)
                else:
                    prior_loc, prior_logvar = (
                        m.reshape(B, self.z_dim) for m in self.transition.moments(z)
                    )
                loc, logvar = self.posterior(features[:, t - 1], prior_loc, prior_logvar)
                shape = (B, self.num_factors, self.factor_dim)
                q_z = dist.Normal(loc.view(shape), (0.5 * logvar).exp().view(shape)).to_event(1)
                with factors, poutine.scale(scale=kl_scale):
                    z = pyro.sample(f"z_{t}", q_z)


def terms_by_hand(dvip, x, guide_trace):
    """From the guide's sample, with torch.distributions only: log p(x_t | z_t) summed over
    steps (B,), and per step and factor (B, T, K) log q(z_t), log p(z_t | z_{t-1}) and the
    closed-form KL."""
    zs = [guide_trace.nodes[f"z_{t}"]["value"] for t in range(1, x.shape[1] + 1)]  # (B, K, d)
    mean = dvip.decoder(torch.stack(zs, 1).flatten(0, 1).flatten(1)).view(x.shape)
    recon = Normal(mean, dvip.obs_var**0.5).log_prob(x).flatten(1).sum(-1)
    log_q, log_p, kl = [], [], []
    for t, z in enumerate(zs, 1):
        q_site = guide_trace.nodes[f"z_{t}"]["fn"].base_dist
        q = Normal(q_site.loc, q_site.scale)
        if t == 1:
            p = Normal(torch.zeros_like(z), 1.0)
        else:
            loc, logvar = dvip.transition.moments(zs[t - 2])
            p = Normal(loc, (0.5 * logvar).exp())
        log_q.append(q.log_prob(z).sum(-1))
        log_p.append(p.log_prob(z).sum(-1))
        kl.append(kl_divergence(q, p).sum(-1))
    return recon, *(torch.stack(v, 1) for v in (log_q, log_p, kl))


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
@pytest.mark.parametrize("kl_scale", [1.0, 0.25])
def test_loss_is_minus_recon_plus_kl_scale_times_kl(elbo, kl_scale):
    dvip, x = DVIP(2, 3, **TINY_MODEL).eval(), frames()
    with torch.no_grad():
        torch.manual_seed(0)
        loss, recon, kl = NegELBO(dvip, elbo).forward_with_terms(x, kl_scale)
        torch.manual_seed(0)  # the same posterior sample, by hand
        guide = poutine.trace(dvip.guide).get_trace(x, kl_scale)
        want_recon, log_q, log_p, analytic_kl = terms_by_hand(dvip, x, guide)
    # Trace_ELBO's KL is the single-sample log q - log p; TraceMeanField_ELBO's the closed form
    want_kl = (log_q - log_p if elbo == "trace" else analytic_kl).sum(1)  # (B, K)
    assert kl.shape == want_kl.shape == (x.shape[0], dvip.num_factors)
    want_loss = -(want_recon - kl_scale * want_kl.sum(-1)).mean()
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(recon, want_recon)  # the terms are unscaled
    torch.testing.assert_close(kl, want_kl)  # each factor's own


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
def test_the_transition_learns_only_through_the_kl(elbo):
    """Appendix A: the guide reads the prior's prediction detached, so the transition's
    gradient is that of the model's KL (or log p) term alone, with the guide's sample fixed."""
    x = frames(2)
    for model_class in (DVIP, UndetachedGuide):
        pyro.set_rng_seed(0)
        dvip = model_class(2, 3, **TINY_MODEL).eval()
        torch.manual_seed(0)
        NegELBO(dvip, elbo)(x).backward()
        got = [p.grad.clone() for p in dvip.transition.parameters()]
        dvip.zero_grad()
        torch.manual_seed(0)
        guide = poutine.trace(dvip.guide).get_trace(x)
        kl_alone = 0.0
        for t in range(2, T + 1):
            q = guide.nodes[f"z_{t}"]["fn"].base_dist
            z_prev, z = (guide.nodes[f"z_{s}"]["value"].detach() for s in (t - 1, t))
            loc, logvar = dvip.transition.moments(z_prev)
            p = Normal(loc, (0.5 * logvar).exp())
            if elbo == "meanfield":
                kl_alone += kl_divergence(Normal(q.loc.detach(), q.scale.detach()), p).sum()
            else:
                kl_alone -= p.log_prob(z).sum()  # log q(z) does not depend on the prior
        (kl_alone / len(x)).backward()
        expected = [p.grad for p in dvip.transition.parameters()]
        same = all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(got, expected))
        assert same == (model_class is DVIP), model_class.__name__


def test_held_out_elbo_of_a_known_model_is_its_closed_form():
    q_loc = torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    q_logvar = torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0]])
    dvip = make_known_answer(DVIP(2, 3, **TINY_MODEL), q_loc, q_logvar)
    x = frames(5)
    # per frame: log N(x_t | 0.5, 0.25 I) averaged over the 5 x 3 frames, minus the KL per step
    recon = Normal(0.5, 0.5).log_prob(x).flatten(2).sum(-1).mean()
    expected = recon - unit_kl_to_standard_normal(q_loc, q_logvar).sum()
    assert held_out_elbo(dvip, x, batch_size=2) == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_held_out_elbo_keeps_the_mode_and_the_global_random_state(training):
    dvip, x = DVIP(2, 3, **TINY_MODEL).train(training), frames(4)
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    first = held_out_elbo(dvip, x, batch_size=3)
    assert dvip.training is training
    assert all(m.training is training for m in dvip.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    assert held_out_elbo(dvip, x, batch_size=3) == first  # a fixed seed: checkpoints compare
    assert held_out_elbo(dvip, x, batch_size=3, seed=1) != first
