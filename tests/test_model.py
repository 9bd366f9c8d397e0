import pytest
import torch
from pyro import poutine

from pyro_dvip import DVIP, FactoredMLPTransition, NegELBO, Transition
from pyro_dvip.networks import Decoder, Encoder, FactoredMLP


def traces(dvip, x, **kwargs):
    guide = poutine.trace(dvip.guide).get_trace(x, **kwargs)
    model = poutine.trace(poutine.replay(dvip.model, trace=guide)).get_trace(x, **kwargs)
    return model, guide


@pytest.mark.parametrize("K,d", [(1, 6), (2, 3), (8, 2)])
def test_trace_sites_plates_and_shapes(K, d):
    B, T, S = 3, 4, 16
    dvip = DVIP(K, d, image_size=S, width=4)
    x = torch.rand(B, T, 3, S, S)
    model, guide = traces(dvip, x)
    names = [f"z_{t}" for t in range(1, T + 1)]
    for tr in (model, guide):
        latents = [
            n
            for n, s in tr.nodes.items()
            if s["type"] == "sample"
            and not s["is_observed"]
            and s["name"] not in ("videos", "factors", "steps")
        ]
        assert latents == names
        for name in names:
            site = tr.nodes[name]
            plates = {f.name: f.size for f in site["cond_indep_stack"]}
            assert plates == {"videos": B, "factors": K}
            assert site["value"].shape == (B, K, d)
            assert site["fn"].batch_shape == (B, K) and site["fn"].event_shape == (d,)
    obs = model.nodes["x"]
    assert obs["is_observed"] and torch.equal(obs["value"], x)
    assert obs["fn"].batch_shape == (B, T) and obs["fn"].event_shape == (3, S, S)
    assert {f.name for f in obs["cond_indep_stack"]} == {"videos", "steps"}
    shapes = model.format_shapes()
    for t in range(1, T + 1):
        assert f"z_{t} dist {B} {K} | {d}" in " ".join(shapes.split())
    assert f"x dist {B} {T} | 3 {S} {S}" in " ".join(shapes.split())


def test_paper_sizes_networks():
    z_dim = 40
    enc, dec = Encoder(3, 64, z_dim, width=64), Decoder(3, 64, z_dim, width=64)
    convs = [m for m in enc.conv if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 64),
        (64, 128),
        (128, 256),
        (256, 512),
        (512, 40),
    ]
    deconvs = [m for m in dec.deconv if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in deconvs] == [
        (40, 512),
        (512, 256),
        (256, 128),
        (128, 64),
        (64, 3),
    ]
    frames = torch.rand(5, 3, 64, 64)
    assert enc(frames).shape == (5, 40)
    out = dec(torch.randn(5, 40))
    assert out.shape == (5, 3, 64, 64) and out.min() >= 0 and out.max() <= 1
    mlp = FactoredMLP(2, 20)  # the paper's table: d->128, 3 x 128->128, 128->2d
    assert [tuple(layer.weight.shape) for layer in mlp.layers] == [(2, 20, 128)] + [
        (2, 128, 128)
    ] * 3
    assert tuple(mlp.head.weight.shape) == (2, 128, 40)


def test_32x32_support_and_bad_image_size():
    dvip = DVIP(2, 4, image_size=32, width=8)
    assert dvip.decoder(torch.randn(2, 8)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="image_size must be one of"):
        DVIP(2, 4, image_size=48)


def test_entangled_baseline_differs_only_in_the_transition():
    factored, entangled = DVIP(2, 20), DVIP(1, 40)
    shapes = lambda m: {
        n: p.shape for n, p in m.named_parameters() if not n.startswith("transition")
    }
    assert shapes(factored) == shapes(entangled)
    assert entangled.transition.mlp.layers[0].weight.shape == (1, 40, 128)


def test_transition_factor_outputs_depend_only_on_their_own_factor():
    K, d = 4, 3
    mlp = FactoredMLP(K, d, hidden=16, num_hidden_layers=2)
    z = torch.randn(1, K, d)
    jac_loc, jac_logvar = torch.autograd.functional.jacobian(lambda z: mlp(z), z)
    for jac in (jac_loc, jac_logvar):
        jac = jac.reshape(K, d, K, d)  # (out factor, out unit, in factor, in unit)
        for k in range(K):
            for j in range(K):
                block = jac[k, :, j, :]
                if j == k:
                    assert block.abs().sum() > 0
                else:
                    assert torch.count_nonzero(block) == 0


def test_factored_mlp_matches_separate_per_factor_mlps():
    K, d = 3, 2
    mlp = FactoredMLP(K, d, hidden=8, num_hidden_layers=1)
    z = torch.randn(5, K, d)
    loc, logvar = mlp(z)
    for k in range(K):
        h = z[:, k]
        for layer in mlp.layers:
            h = torch.selu(h @ layer.weight[k] + layer.bias[k])
        out = h @ mlp.head.weight[k] + mlp.head.bias[k]
        torch.testing.assert_close(loc[:, k], out[:, :d])
        torch.testing.assert_close(logvar[:, k], out[:, d:])


def test_guide_feeds_the_prior_detached():
    dvip = DVIP(2, 3, image_size=16, width=4)
    x = torch.rand(2, 3, 3, 16, 16)
    guide = poutine.trace(dvip.guide).get_trace(x)
    guide.compute_log_prob()
    sum(
        site["log_prob_sum"] + site["value"].sum()
        for name, site in guide.nodes.items()
        if name.startswith("z_")
    ).backward()
    assert all(p.grad is None for p in dvip.transition.parameters())
    assert dvip.encoder.fc.weight.grad.abs().sum() > 0
    assert dvip.posterior.combine.weight.grad.abs().sum() > 0


def test_transition_learns_through_the_model_kl():
    dvip = DVIP(2, 3, image_size=16, width=4)
    NegELBO(dvip)(torch.rand(2, 3, 3, 16, 16)).backward()
    assert dvip.transition.mlp.layers[0].weight.grad.abs().sum() > 0


def test_kl_scale_wraps_latent_sites_in_model_and_guide():
    dvip = DVIP(2, 3, image_size=16, width=4)
    model, guide = traces(dvip, torch.rand(2, 3, 3, 16, 16), kl_scale=0.25)
    for tr in (model, guide):
        assert all(tr.nodes[f"z_{t}"]["scale"] == 0.25 for t in (1, 2, 3))
    assert model.nodes["x"]["scale"] == 1.0


def test_loss_terms_are_read_from_the_same_sample():
    dvip = DVIP(2, 3, image_size=16, width=4)
    x = torch.rand(3, 4, 3, 16, 16)
    for name in ("trace", "meanfield"):
        loss, recon, kl = NegELBO(dvip, name).forward_with_terms(x)
        torch.testing.assert_close(-loss * 3, (recon - kl.sum(-1)).sum(), rtol=1e-5, atol=1e-2)


class ScaledRandomWalk(Transition):
    """z_t^k ~ N(a_k z_{t-1}^k, s_k^2): a minimal user prior."""

    def __init__(self, num_factors, factor_dim):
        super().__init__(num_factors, factor_dim)
        self.a = torch.nn.Parameter(torch.ones(num_factors, 1))
        self.log_s = torch.nn.Parameter(torch.zeros(num_factors, 1))

    def forward(self, z_prev):
        import pyro.distributions as dist

        return dist.Normal(self.a * z_prev, self.log_s.exp().expand_as(z_prev)).to_event(1)


def test_a_custom_prior_is_one_small_class():
    dvip = DVIP(2, 3, image_size=16, width=4, transition=ScaledRandomWalk)
    assert isinstance(dvip.transition, ScaledRandomWalk)
    loss = NegELBO(dvip)(torch.rand(2, 3, 3, 16, 16))
    loss.backward()
    assert torch.isfinite(loss) and dvip.transition.a.grad is not None
    with pytest.raises(ValueError, match="transition is for 3x3 factors"):
        DVIP(2, 3, image_size=16, width=4, transition=ScaledRandomWalk(3, 3))
    with pytest.raises(TypeError, match="must be a pyro_dvip.Transition"):
        DVIP(2, 3, image_size=16, width=4, transition=torch.nn.Linear(2, 2))
    assert isinstance(DVIP(2, 3, image_size=16, width=4).transition, FactoredMLPTransition)


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
def test_elbo_finite_and_improving(elbo):
    from pyro_dvip.data import MovingMNIST, load_digits

    torch.manual_seed(0)
    digits, labels = load_digits("train")
    data = MovingMNIST(digits, labels, image_size=16, seq_len=3, seed=1)
    held_out = data.sample(16).frames
    dvip = DVIP(2, 3, image_size=16, width=8, obs_var=0.05, transition_layers=1)
    objective = NegELBO(dvip, elbo)
    optimizer = torch.optim.Adam(dvip.parameters(), lr=3e-3)

    def held_out_loss():
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(123)
            return sum(objective(held_out).item() for _ in range(4)) / 4

    before = held_out_loss()
    for _ in range(50):
        loss = objective(data.sample(16).frames)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert after < before - 0.1 * abs(before), (before, after)


def test_distributions_are_built_in_float32_under_bf16_autocast():
    dvip = DVIP(2, 3, image_size=16, width=4)
    x = torch.rand(2, 3, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model, guide = traces(dvip, x)
        loss = NegELBO(dvip, "meanfield")(x)
    for tr in (model, guide):
        for name in ("z_2", "z_3"):
            assert tr.nodes[name]["fn"].base_dist.loc.dtype == torch.float32
    assert model.nodes["x"]["fn"].base_dist.loc.dtype == torch.float32
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
