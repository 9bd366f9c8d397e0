"""The composite decoder with the residual guide, and a static background (beyond the paper):
block k > 1 reads the frame minus the composite of the blocks before it, beside the share of
each pixel they leave unclaimed; --background static is a learned image no factor draws."""

import json

import pytest
import torch
from conftest import run_cli, tiny_args
from pyro import poutine

from pyro_dvip import DVIP, check_elbo, load
from pyro_dvip.decoders import AdditiveDecoder, CompositeDecoder, make_decoder

S, K, d, C = 16, 3, 2, 3
COMPOSITE = ["--decoder", "composite", "--encoder", "residual"]


def composite(background="none"):
    return CompositeDecoder(C, S, K, d, width=4, background=background)


def model(background="none"):
    return DVIP(K, d, image_size=S, width=4, transition_layers=1, encoder="residual",
                decoder=lambda: composite(background))  # fmt: skip


def randomise_background(dec):
    """A trained-looking background: colour and mask logits far from their start."""
    with torch.no_grad():
        dec.background.copy_(torch.randn_like(dec.background) * 2)


@pytest.mark.parametrize("background", ["none", "static"])
def test_each_block_reads_the_frame_minus_the_composite_before_it_and_the_unclaimed_share(
    background,
):
    torch.manual_seed(0)
    dvip = model(background).eval()
    if background == "static":
        randomise_background(dvip.decoder)
    x = torch.rand(4, 1, C, S, S)
    got = poutine.trace(dvip.guide).get_trace(x).nodes["z_1"]["fn"].base_dist.loc  # (B, K, d)
    zeros = torch.zeros(4, K * d)
    with torch.no_grad():
        if background == "none":  # the rest: black, mask logit 0
            rest_logit, rest_colour = torch.zeros(4, 1, S, S), torch.zeros(4, C, S, S)
        else:
            rest_logit = dvip.decoder.background[C:].expand(4, 1, S, S)
            rest_colour = torch.sigmoid(dvip.decoder.background[:C]).expand(4, C, S, S)
        loc, _ = dvip.posterior.head(dvip.encoder(x[:, 0]), zeros, zeros)
        want, weights, colours = [loc[:, :d]], [rest_logit.exp()], [rest_colour]
        for k in range(1, K):
            alone = torch.zeros(4, K * d)  # block k-1 alone: its generator's colour and mask
            alone[:, (k - 1) * d : k * d] = want[-1]
            out = dvip.decoder.generators(alone)[:, k - 1]  # (B, C + 1, S, S)
            weights.append(out[:, C:].exp())
            colours.append(torch.sigmoid(out[:, :C]))
            total = sum(weights)
            drawn = sum(w * c for w, c in zip(weights, colours)) / total
            reads = torch.cat([x[:, 0] - drawn, weights[0] / total], 1)
            loc, _ = dvip.posterior.head(dvip.posterior.encoders[k - 1](reads), zeros, zeros)
            want.append(loc[:, k * d : (k + 1) * d])
    torch.testing.assert_close(got, torch.stack(want, 1))
    assert dvip.posterior.encoders[0].conv[0].in_channels == C + 1  # the residual and the scope


def test_what_all_blocks_explain_with_the_static_background_is_the_models_mean():
    torch.manual_seed(1)
    dec = composite("static").eval()
    randomise_background(dec)
    z = torch.randn(5, K * d)
    drawn, rest = dec.explained(dec.generators(z))
    torch.testing.assert_close(drawn, dec(z))  # every slot of the softmax is in the composite
    parts = dec.parts(z)
    torch.testing.assert_close(parts["background_mask"][:, 0], rest)
    torch.testing.assert_close(parts["layers"].sum(1) + parts["background"][:, 0], dec(z))
    total = parts["masks"].sum(1) + parts["background_mask"][:, 0]
    torch.testing.assert_close(total, torch.ones(5, 1, S, S))
    assert 0 <= dec(z).min() and dec(z).max() <= 1


def test_a_static_background_the_factors_do_not_draw():
    torch.manual_seed(2)
    dec = composite("static").eval()
    randomise_background(dec)
    z = torch.randn(3, K * d)
    # no factor can draw over it where its mask logit dominates: there the mean is its colour
    with torch.no_grad():
        dec.background[C:, :4, :4] = 60.0
    mean = dec(z)
    colour = torch.sigmoid(dec.background[:C, :4, :4]).expand(3, C, 4, 4)
    torch.testing.assert_close(mean[:, :, :4, :4], colour)
    # and it is a parameter that gets a gradient from the likelihood
    dec.train()
    dec(z).sum().backward()
    assert dec.background.grad is not None and dec.background.grad.abs().sum() > 0


def test_an_additive_static_background_is_one_more_sigmoid_layer():
    torch.manual_seed(3)
    dec = AdditiveDecoder(C, S, K, d, width=4, background="static").eval()
    randomise_background(dec)
    z = torch.randn(4, K * d)
    layers = torch.sigmoid(dec.generators(z)).sum(1)
    torch.testing.assert_close(dec(z), layers + torch.sigmoid(dec.background))
    drawn, scope = dec.explained(dec.generators(z))
    assert scope is None
    torch.testing.assert_close(drawn, dec(z))


@pytest.mark.parametrize("background", ["none", "static"])
def test_check_elbo_passes_with_the_composite_and_the_posterior_that_explains_away(background):
    torch.manual_seed(4)
    dvip = model(background)
    if background == "static":
        randomise_background(dvip.decoder)
    x = torch.rand(3, 3, C, S, S, generator=torch.Generator().manual_seed(1))
    result = check_elbo(dvip, x, num_particles=10)
    assert result.passed, result.format()


def test_train_records_the_composite_residual_guide_and_load_rebuilds_it(tmp_path):
    out = tmp_path / "run"
    args = [*COMPOSITE, "--background", "static", "--factors", 3, "--out", out, "--quiet"]
    result = run_cli("train", *tiny_args(steps=2), *args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["decoder"], config["encoder"], config["background"]) == (
        "composite",
        "residual",
        "static",
    )
    model = load(out)
    assert isinstance(model.decoder, CompositeDecoder) and len(model.posterior.encoders) == 2
    assert model.decoder.background.shape == (C + 1, 16, 16)
    state = torch.load(sorted((out / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    assert "decoder.background" in state["model"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, state["model"][name]), name


def test_the_check_elbo_command_passes_for_it():
    result = run_cli(
        "check-elbo", "--factors", 2, "--factor-dim", 3, "--image-size", 16, "--width", 4,
        "--transition-layers", 1, "--batch-size", 3, "--seq-len", 3, "--particles", 10,
        *COMPOSITE, "--background", "static",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--background", "static"], "Invalid value for '--background': applies to --decoder "
         "additive, composite or glimpse only"),
        (["--decoder", "composite", "--background", "painted"], "'--background': must be one "
         "of none, static, got 'painted'"),
        ([*COMPOSITE, "--factors", "1"], "Invalid value for '--encoder': residual needs "
         "--decoder additive or composite and --factors >= 2 (got decoder composite, 1 "
         "factors)"),
    ],
)  # fmt: skip
def test_bad_combinations_are_one_line_errors(tmp_path, args, message):
    result = run_cli("train", *tiny_args(steps=1), *args, "--out", tmp_path / "bad")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "bad").exists()


def test_the_model_refuses_a_background_on_the_paper_decoder():
    with pytest.raises(ValueError, match="background: applies to --decoder additive or"):
        make_decoder("paper", C, S, K, d, background="static")
