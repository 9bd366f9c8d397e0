"""The training step computes the objective and gradients of a plain transcription of the
paper's model and guide.

The reference below writes ``DVIP.model`` and ``DVIP.guide`` out with nothing but the networks:
the guide evaluates the transition under ``no_grad`` and the likelihood is ``pyro``'s
``Normal`` with the scale broadcast to the frames (the model's ``FixedVarianceNormal`` is
the fast version of it).
"""

import copy
import math
from functools import partial

import pyro
import pytest
import torch
from conftest import TINY
from pyro import distributions as dist
from pyro import poutine

from pyro_dvip import DVIP, NegELBO, Transition, make_config, train
from pyro_dvip.build import build_model
from pyro_dvip.distributions import FixedVarianceNormal
from pyro_dvip.objective import make_elbo


def reference_model(dvip: DVIP, x: torch.Tensor, kl_scale: float = 1.0) -> None:
    B, T = x.shape[:2]
    zs = []
    factors = pyro.plate("factors", dvip.num_factors, dim=-1)
    with pyro.plate("videos", B, dim=-2):
        z = None
        for t in pyro.markov(range(1, T + 1)):
            p_z = dvip.transition.initial(B, x) if t == 1 else dvip.transition(z)
            with factors, poutine.scale(scale=kl_scale):
                z = pyro.sample(f"z_{t}", p_z)
            zs.append(z)
        mean = dvip.decoder(torch.stack(zs, 1).reshape(B * T, dvip.z_dim)).view(x.shape)
        with pyro.plate("steps", T, dim=-1):
            pyro.sample("x", dist.Normal(mean, dvip.obs_var**0.5).to_event(3), obs=x)


def reference_guide(dvip: DVIP, x: torch.Tensor, kl_scale: float = 1.0) -> None:
    B, T = x.shape[:2]
    features = dvip.encoder(x.flatten(0, 1)).view(B, T, dvip.z_dim)
    factors = pyro.plate("factors", dvip.num_factors, dim=-1)
    with pyro.plate("videos", B, dim=-2):
        z = None
        for t in pyro.markov(range(1, T + 1)):
            if t == 1:
                prior_loc = prior_logvar = features.new_zeros(B, dvip.z_dim)
            else:
                with torch.no_grad():
                    prior_loc, prior_logvar = (
                        m.reshape(B, dvip.z_dim) for m in dvip.transition.moments(z)
                    )
            loc, logvar = dvip.posterior(features[:, t - 1], prior_loc, prior_logvar)
            q_z = dist.Normal(
                loc.view(B, dvip.num_factors, dvip.factor_dim),
                (0.5 * logvar).exp().view(B, dvip.num_factors, dvip.factor_dim),
            ).to_event(1)
            with factors, poutine.scale(scale=kl_scale):
                z = pyro.sample(f"z_{t}", q_z)


def reference_loss(dvip, x, elbo: str, kl_scale: float) -> torch.Tensor:
    model = partial(reference_model, dvip)
    guide = partial(reference_guide, dvip)
    return make_elbo(elbo).differentiable_loss(model, guide, x, kl_scale) / x.shape[0]


class LinearPrior(Transition):
    """A user prior that implements only ``forward`` (moments read off the distribution)."""

    def __init__(self, num_factors, factor_dim):
        super().__init__(num_factors, factor_dim)
        self.a = torch.nn.Parameter(torch.full((num_factors, factor_dim), 0.9))
        self.log_scale = torch.nn.Parameter(torch.full((num_factors, factor_dim), -1.0))

    def forward(self, z_prev):
        return dist.Normal(self.a * z_prev, self.log_scale.exp().expand_as(z_prev)).to_event(1)


class LinearPriorOwnMoments(LinearPrior):
    """A user prior that also overrides ``moments``, with values the distribution lacks."""

    def moments(self, z_prev):
        p = self(z_prev)
        return p.mean.tanh(), p.variance.log() + 1.0


def model_pair(transition=None, seed=0):
    torch.manual_seed(seed)
    new = DVIP(2, 3, channels=3, image_size=16, width=4, obs_var=0.2, transition=transition,
               transition_layers=1)  # fmt: skip
    return new, copy.deepcopy(new)


def gradients(dvip: DVIP, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    dvip.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in dvip.named_parameters() if p.grad is not None}


def assert_same_step(new, old, x, elbo, kl_scale, with_terms=False):
    pyro.set_rng_seed(3)
    loss_new = NegELBO(new, elbo)(x, kl_scale, with_terms=with_terms)
    loss_new = loss_new[0] if with_terms else loss_new
    pyro.set_rng_seed(3)
    loss_old = reference_loss(old, x, elbo, kl_scale)
    torch.testing.assert_close(loss_new, loss_old, rtol=1e-5, atol=1e-4)
    grads_new, grads_old = gradients(new, loss_new), gradients(old, loss_old)
    assert grads_new.keys() == grads_old.keys() == {n for n, _ in new.named_parameters()}
    assert_close_grads(grads_new, grads_old)
    for name in grads_old:  # the same KL of the same samples: not even rounding differs
        if name.startswith("transition."):
            assert torch.equal(grads_new[name], grads_old[name]), name


def assert_close_grads(grads, expected):
    """Float tolerance: the likelihood's rounding differs, and the biases ahead of BatchNorm
    have gradients that are rounding noise, so the absolute tolerance is set by the largest."""
    scale = max(g.abs().max() for g in expected.values())
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-4, atol=1e-6 * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")  # fmt: skip


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
@pytest.mark.parametrize("kl_scale", [1.0, 0.3])
def test_loss_and_every_gradient_equal_a_plain_transcription(elbo, kl_scale):
    new, old = model_pair()
    x = torch.rand(4, 3, 3, 16, 16)
    assert_same_step(new, old, x, elbo, kl_scale)
    assert_same_step(new, old, x, elbo, kl_scale, with_terms=True)


@pytest.mark.parametrize("prior", [LinearPrior, LinearPriorOwnMoments])
def test_user_transition_gives_the_same_step(prior):
    new, old = model_pair(prior)
    assert_same_step(new, old, torch.rand(4, 3, 3, 16, 16), "trace", 0.5)


def test_the_comparison_tells_a_different_objective_apart():
    """The tolerances above are tight enough to fail for a 1% change in the KL weight."""
    new, old = model_pair()
    x = torch.rand(4, 3, 3, 16, 16)
    with pytest.raises(AssertionError):
        pyro.set_rng_seed(3)
        grads_new = gradients(new, NegELBO(new, "trace")(x, 0.505))
        pyro.set_rng_seed(3)
        grads_old = gradients(old, reference_loss(old, x, "trace", 0.5))
        assert_close_grads(grads_new, grads_old)


def test_transition_learns_only_through_the_models_kl():
    dvip, _ = model_pair()
    x = torch.rand(4, 3, 3, 16, 16)
    guide = poutine.trace(dvip.guide).get_trace(x)
    model = poutine.trace(poutine.replay(dvip.model, trace=guide)).get_trace(x)
    params = list(dvip.transition.parameters())
    guide.compute_log_prob()
    model.compute_log_prob()
    sites = [f"z_{t}" for t in (1, 2, 3)]
    log_q = sum(guide.nodes[s]["log_prob_sum"] for s in sites)
    recon = model.nodes["x"]["log_prob_sum"]
    log_p = sum(model.nodes[s]["log_prob_sum"] for s in sites)
    for term in (log_q, recon):  # the guide's density and the likelihood: no path
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        assert all(g is None for g in grads)
    grads = torch.autograd.grad(log_p, params)
    assert all(g.abs().sum() > 0 for g in grads)


def test_fixed_variance_normal_matches_normal():
    loc = torch.randn(2, 3, 4, requires_grad=True)
    value = torch.rand(2, 3, 4)
    ours = FixedVarianceNormal(loc, 0.2).to_event(3).log_prob(value)
    theirs = dist.Normal(loc, 0.2**0.5).to_event(3).log_prob(value)
    torch.testing.assert_close(ours, theirs)
    (g_ours,) = torch.autograd.grad(ours.sum(), loc)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), loc)
    torch.testing.assert_close(g_ours, g_theirs)
    expanded = FixedVarianceNormal(loc[:1], 0.2).expand((2, 3, 4))
    assert expanded.batch_shape == (2, 3, 4)
    torch.testing.assert_close(expanded.log_prob(value), dist.Normal(loc[:1], 0.2**0.5)
                               .expand((2, 3, 4)).log_prob(value))  # fmt: skip


def first_loss_and_params(tmp_path, name, **options):
    result = train(make_config(**{**TINY, "checkpoint_every": 50, **options}), tmp_path / name,
                   progress=False)  # fmt: skip
    rows = result.metrics
    return rows, {n: p.detach().clone() for n, p in result.model.named_parameters()}


def test_bf16_runs_the_networks_in_bf16_the_distributions_in_float32_and_trains(
    tmp_path, monkeypatch
):
    conv_dtypes, likelihood_dtypes = set(), set()
    conv_forward, log_prob = torch.nn.ConvTranspose2d.forward, FixedVarianceNormal.log_prob

    def recording_conv(self, *args, **kwargs):
        out = conv_forward(self, *args, **kwargs)
        conv_dtypes.add(out.dtype)
        return out

    def recording_log_prob(self, value):
        out = log_prob(self, value)
        likelihood_dtypes.update({self.loc.dtype, out.dtype})
        return out

    monkeypatch.setattr(torch.nn.ConvTranspose2d, "forward", recording_conv)
    monkeypatch.setattr(FixedVarianceNormal, "log_prob", recording_log_prob)
    options = dict(log_every=1, lr=3e-3)
    bf16_rows, bf16_params = first_loss_and_params(tmp_path, "bf16", precision="bf16", steps=12,
                                                   **options)  # fmt: skip
    assert torch.bfloat16 in conv_dtypes and likelihood_dtypes == {torch.float32}
    fp32_rows, _ = first_loss_and_params(tmp_path, "fp32", steps=1, **options)
    first_bf16, first_fp32 = bf16_rows[0]["objective_avg"], fp32_rows[0]["objective_avg"]
    assert first_bf16 != first_fp32 and abs(first_bf16 - first_fp32) < 1e-2 * abs(first_fp32)
    bound = [row["objective_avg"] for row in bf16_rows]  # -loss per frame
    assert all(map(math.isfinite, bound))
    assert sum(bound[-3:]) / 3 > sum(bound[:3]) / 3 + 10  # the bound rises
    pyro.set_rng_seed(0)
    initial = build_model(make_config(**TINY))
    assert all(not torch.equal(bf16_params[n], p) for n, p in initial.named_parameters())


def broken_compile(fn, *args, **kwargs):
    def compiled(*a, **k):
        raise RuntimeError("no C compiler here")

    return compiled


def test_a_failed_compile_trains_on_eager_exactly_as_an_uncompiled_run(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(torch, "compile", broken_compile)
    eager_rows, eager_params = first_loss_and_params(tmp_path, "eager", steps=3)
    with caplog.at_level("WARNING"):
        rows, params = first_loss_and_params(tmp_path, "compiled", steps=3, compile=True)
    assert "--compile: torch.compile failed (RuntimeError: no C compiler here)" in caplog.text
    assert [r["elbo"] for r in rows] == [r["elbo"] for r in eager_rows]
    assert all(torch.equal(params[n], p) for n, p in eager_params.items())
    assert '"compile": true' in (tmp_path / "compiled" / "config.json").read_text()


def test_compile_wraps_the_encoder_and_decoder_and_logs_its_cost(tmp_path, monkeypatch, caplog):
    wrapped = []

    def counting_compile(fn, *args, **kwargs):
        wrapped.append(fn.__self__)
        return fn

    monkeypatch.setattr(torch, "compile", counting_compile)
    with caplog.at_level("INFO"):
        rows, _ = first_loss_and_params(tmp_path, "run", steps=3, compile=True)
    assert [type(m).__name__ for m in wrapped] == ["Encoder", "Decoder"]
    assert "--compile: the first step took" in caplog.text
    assert "compilation cost about" in caplog.text
    assert all("forward" not in vars(m) for m in wrapped)  # eager again after training
