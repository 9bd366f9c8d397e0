"""Per-factor decoders (--decoder additive|composite): structure, the model's mean, options."""

import json

import pytest
import torch
from conftest import TINY, run_cli, tiny_args
from pyro import distributions as dist
from pyro import poutine

from pyro_dvip import DVIP, check_elbo, load, make_config
from pyro_dvip.build import build_model
from pyro_dvip.decoders import BLACK, AdditiveDecoder, CompositeDecoder
from pyro_dvip.networks import Decoder

S, K, d = 16, 2, 3
KINDS = ["additive", "composite"]


def decoder(kind, channels=3):
    cls = AdditiveDecoder if kind == "additive" else CompositeDecoder
    return cls(channels, S, K, d, width=4)


def block_jacobian_norms(f, z):
    """|| d f(z)[n, pixel] / d z[n, block k] || by central differences in float64, summed over
    the latents z (n, K d): (K, outputs)."""
    eps, columns = 1e-5, []
    with torch.no_grad():
        for i in range(K * d):
            step = torch.zeros(K * d, dtype=torch.float64)
            step[i] = eps
            columns.append((f(z + step) - f(z - step)).flatten(1) / (2 * eps))  # (n, P)
    jac = torch.stack(columns, -1)  # (n, P, K d)
    return jac.view(*jac.shape[:2], K, d).norm(dim=-1).sum(0).T


@pytest.mark.parametrize("kind", KINDS)
def test_each_factor_layer_depends_only_on_its_own_block(kind):
    torch.manual_seed(0)
    dec = decoder(kind).eval().double()
    z = torch.randn(8, K * d, dtype=torch.float64)  # several: a ReLU may be dead at one z
    for k in range(K):
        norms = block_jacobian_norms(lambda v, k=k: dec.parts(v)["layers"][:, k], z)
        assert norms[k].max() > 1e-4  # its own block moves it
        if kind == "additive":
            assert norms[1 - k].max() < 1e-9  # the other block does not touch it
    if kind == "additive":  # so the mean: a pixel's Jacobian rows are the layers' rows
        own = block_jacobian_norms(lambda v: dec.parts(v)["layers"].sum(1), z)
        assert torch.allclose(block_jacobian_norms(dec, z), own, atol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_layers_give_the_mean_and_masks_sum_to_one(kind):
    dec = decoder(kind).eval()
    z = torch.randn(5, K * d)
    mean, parts = dec(z), dec.parts(z)
    assert mean.shape == (5, 3, S, S) and parts["layers"].shape == (5, K, 3, S, S)
    assert torch.allclose(mean, parts["layers"].sum(1), atol=1e-5)
    if kind == "composite":
        assert parts["masks"].shape == (5, K, 1, S, S)
        assert torch.allclose(parts["masks"].sum(1), torch.ones(5, 1, S, S), atol=1e-6)
        assert 0 <= mean.min() and mean.max() <= 1


def test_each_factor_has_its_own_generator():
    z = torch.randn(1, d).repeat(1, K)  # both blocks equal
    logits = decoder("additive").eval().generators(z)[0]  # the same units, two generators
    assert not torch.allclose(logits[0], logits[1], atol=1e-2)
    one = AdditiveDecoder(3, S, 1, d, width=4)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(decoder("additive")) == K * count(one)


@pytest.mark.parametrize("kind", KINDS)
def test_a_per_factor_decoder_starts_near_black(kind):
    torch.manual_seed(0)
    z = torch.randn(64, K * d)
    assert abs(decoder(kind).eval()(z).mean().item() - BLACK) < 0.03


@pytest.mark.parametrize("kind", ["additive", "composite"])
def test_the_model_likelihood_mean_is_the_sum_of_the_layers(kind):
    dvip = DVIP(K, d, image_size=S, width=4, decoder=lambda: decoder(kind)).eval()
    x = torch.rand(2, 3, 3, S, S)
    guide = poutine.trace(dvip.guide).get_trace(x)
    model = poutine.trace(poutine.replay(dvip.model, trace=guide)).get_trace(x)
    z = torch.stack([guide.nodes[f"z_{t}"]["value"] for t in (1, 2, 3)], 1).reshape(6, K * d)
    likelihood = model.nodes["x"]["fn"]
    assert isinstance(likelihood.base_dist, dist.Normal)
    layers = dvip.decoder.parts(z)["layers"].sum(1).view(x.shape)
    assert torch.allclose(likelihood.mean, layers, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_check_elbo_passes_for_per_factor_decoders(kind):
    dvip = DVIP(K, d, image_size=S, width=4, transition_layers=1,
                decoder=lambda: decoder(kind))  # fmt: skip
    x = torch.rand(3, 3, 3, S, S, generator=torch.Generator().manual_seed(1))
    result = check_elbo(dvip, x, num_particles=10)
    assert result.passed, result.format()


def test_a_decoder_for_another_latent_size_is_refused():
    with pytest.raises(ValueError, match="decoder: must be a FrameDecoder of z_dim 8"):
        DVIP(2, 4, image_size=S, width=4, decoder=decoder("additive"))


def test_the_paper_model_draws_the_same_initial_weights_as_before():
    torch.manual_seed(3)
    built = build_model(make_config(**TINY))
    torch.manual_seed(3)
    plain = DVIP(2, 3, image_size=16, width=4, transition_layers=1)
    assert isinstance(built.decoder, Decoder)
    for (name, a), (_, b) in zip(built.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "args,cls,parts",
    [
        (["--decoder", "additive", "--background", "static"], AdditiveDecoder, 2),
        (["--decoder", "composite"], CompositeDecoder, 2),
        (["--decoder", "additive", "--entangled"], AdditiveDecoder, 2),
    ],
)  # fmt: skip
def test_train_records_the_decoder_and_load_rebuilds_it(tmp_path, args, cls, parts):
    out = tmp_path / "run"
    result = run_cli("train", *tiny_args(steps=2), *args, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    given = dict(zip(args[::2], args[1::2])) if "--entangled" not in args else {}
    for flag, value in given.items():
        assert config[flag[2:].replace("-", "_")] == value
    model = load(out)
    assert isinstance(model.decoder, cls) and model.decoder.num_parts == parts
    if "--entangled" in args:  # the prior is one factor; rendering stays per block of 3
        assert config["entangled"] and (model.num_factors, model.factor_dim) == (1, 6)
        assert model.decoder.generators.part_dim == 3
    state = torch.load(sorted((out / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    for name, value in model.state_dict().items():
        assert torch.equal(value, state["model"][name]), name


@pytest.mark.parametrize(
    "args,message",
    [
        (["--decoder", "mixture"], "'--decoder': must be one of paper, additive, composite, "
         "glimpse, got 'mixture'"),
        (["--background", "static"], "'--background': applies to --decoder additive, "
         "composite or glimpse only"),
        (["--decoder-width", "0"], "'--decoder-width': must be >= 1, got 0"),
    ],
)  # fmt: skip
def test_bad_decoder_options_are_one_line_errors_naming_the_option(args, message):
    result = run_cli("train", *tiny_args(steps=1), *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "extra",
    [["--transition", "examples.custom_prior:CoupledLinearTransition"],
     ["--encoder", "residual"]],  # the guide that explains away
)  # fmt: skip
def test_check_elbo_command_accepts_a_per_factor_decoder_with_a_prior_or_encoder(extra):
    result = run_cli(
        "check-elbo", "--factors", 2, "--factor-dim", 3, "--image-size", 16, "--width", 4,
        "--transition-layers", 1, "--batch-size", 3, "--seq-len", 3, "--particles", 10,
        "--decoder", "additive", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.output


def test_a_composite_factor_shows_its_masked_colour_less_the_background_it_covers():
    """Against each slot's mask times |its colour - the background's| from the softmax over
    every slot, computed here; over black the background's colour is 0."""
    for background in ("none", "static"):
        torch.manual_seed(0)
        decoder = CompositeDecoder(3, 16, 3, 4, width=4, background=background)
        with torch.no_grad():  # masks far from uniform
            z = 3 * torch.randn(5, 12)
            changes = decoder.visible_changes(z)
            slots = decoder._slots(decoder.generators(z))  # (N, S, C + 1, H, W)
            masks = torch.softmax(slots[:, :, 3:], 1)
            colours = torch.sigmoid(slots[:, :, :3])
            first = 1 if background == "static" else 0
            behind = colours[:, :1] if first else torch.zeros_like(colours[:, :1])
            expected = (masks * (colours - behind)).abs().sum(2)[:, first:]
            torch.testing.assert_close(changes, expected, atol=1e-6, rtol=1e-5)
