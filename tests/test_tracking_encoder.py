"""The tracking encoder (--encoder tracking, beyond the paper): as the residual guide, block 1
included, and each block also reads what it alone would draw at its own prior's prediction from
its past (zeros at t = 1), so a factor can follow its object through a crossing."""

import json

import pytest
import torch
from conftest import run_cli, tiny_args
from pyro import poutine

from pyro_dvip import DVIP, check_elbo, load
from pyro_dvip.networks import AdditiveDecoder, CompositeDecoder

S, K, d, C = 16, 3, 2, 3
TRACKING = ["--decoder", "additive", "--decoder-weights", "per-factor", "--encoder", "tracking"]


def tracking_model(decoder="additive", background="none"):
    kind = AdditiveDecoder if decoder == "additive" else CompositeDecoder
    make = lambda: kind(C, S, K, d, width=4, weights="per-factor", background=background)  # noqa: E731
    return DVIP(K, d, image_size=S, width=4, transition_layers=1, decoder=make,
                encoder="tracking")  # fmt: skip


def randomise_background(dec):
    with torch.no_grad():
        dec.background.copy_(torch.randn_like(dec.background) * 2)


def additive_posterior(dvip, x_t, prior_loc, prior_logvar, first_step):
    """Written out for the additive decoder: block k's encoder reads x_t minus the layers of
    blocks j < k at their posterior means (and the background's), beside sigmoid(g_k(prior
    mean of block k)) plus the background's layer (zeros at t = 1)."""
    bg = torch.sigmoid(dvip.decoder.background) if dvip.decoder.background is not None else 0
    encoders = [dvip.encoder, *dvip.residual_encoders]
    locs, drawn = [], torch.zeros_like(x_t) + bg
    for k in range(K):
        if k:
            alone = torch.zeros(x_t.shape[0], K * d)
            alone[:, (k - 1) * d : k * d] = locs[-1]
            drawn = drawn + torch.sigmoid(dvip.decoder.generators(alone)[:, k - 1])
        if first_step:
            cue = torch.zeros_like(x_t)
        else:
            ahead = torch.zeros(x_t.shape[0], K * d)
            ahead[:, k * d : (k + 1) * d] = prior_loc[:, k * d : (k + 1) * d]
            cue = torch.sigmoid(dvip.decoder.generators(ahead)[:, k]) + bg
        h = encoders[k](torch.cat([x_t - drawn, cue], 1))
        loc, _ = dvip.posterior(h, prior_loc, prior_logvar)
        locs.append(loc[:, k * d : (k + 1) * d])
    return torch.stack(locs, 1)


@pytest.mark.parametrize("background", ["none", "static"])
def test_each_block_reads_the_residual_beside_its_own_predicted_layer(background):
    torch.manual_seed(0)
    dvip = tracking_model(background=background).eval()
    if background == "static":
        randomise_background(dvip.decoder)
    x = torch.rand(4, 2, C, S, S)
    guide = poutine.trace(dvip.guide).get_trace(x)
    zeros = torch.zeros(4, K * d)
    with torch.no_grad():
        want_1 = additive_posterior(dvip, x[:, 0], zeros, zeros, first_step=True)
        z_1 = guide.nodes["z_1"]["value"]
        prior_loc, prior_logvar = (m.reshape(4, K * d) for m in dvip.transition.moments(z_1))
        want_2 = additive_posterior(dvip, x[:, 1], prior_loc, prior_logvar, first_step=False)
    torch.testing.assert_close(guide.nodes["z_1"]["fn"].base_dist.loc, want_1)
    torch.testing.assert_close(guide.nodes["z_2"]["fn"].base_dist.loc, want_2)
    assert dvip.encoder.conv[0].in_channels == 2 * C  # the residual and the cue
    assert all(e.conv[0].in_channels == 2 * C for e in dvip.residual_encoders)


def test_the_cues_of_all_blocks_add_up_to_the_decoders_mean_at_the_prediction():
    torch.manual_seed(1)
    dvip = tracking_model().eval()
    prior_loc, x_t = torch.randn(5, K * d), torch.rand(5, C, S, S)
    cues = dvip._predicted_drawings(x_t, prior_loc, predicted=True)
    torch.testing.assert_close(sum(cues), dvip.decoder(prior_loc))  # the sum of sigmoid layers
    blank = dvip._predicted_drawings(x_t, prior_loc, predicted=False)
    assert all(torch.equal(c, torch.zeros_like(x_t)) for c in blank)


def test_a_composite_cue_is_the_block_composited_alone_beside_the_rest():
    torch.manual_seed(2)
    dvip = tracking_model("composite", "static").eval()
    randomise_background(dvip.decoder)
    prior_loc = torch.randn(3, K * d)
    cues = dvip._predicted_drawings(torch.rand(3, C, S, S), prior_loc, predicted=True)
    bg = dvip.decoder.background
    with torch.no_grad():
        for k in range(K):
            ahead = torch.zeros(3, K * d)
            ahead[:, k * d : (k + 1) * d] = prior_loc[:, k * d : (k + 1) * d]
            out = dvip.decoder.generators(ahead)[:, k]  # (B, C + 1, S, S)
            w_k, w_0 = out[:, C:].exp(), bg[C:].exp()
            want = (w_k * torch.sigmoid(out[:, :C]) + w_0 * torch.sigmoid(bg[:C])) / (w_k + w_0)
            torch.testing.assert_close(cues[k], want)
    assert dvip.encoder.conv[0].in_channels == 2 * C + 1  # residual, scope and cue


@pytest.mark.parametrize(
    "decoder,background", [("additive", "none"), ("additive", "static"), ("composite", "static")]
)
def test_check_elbo_writes_the_tracking_posterior_by_hand_and_agrees(decoder, background):
    torch.manual_seed(4)
    dvip = tracking_model(decoder, background)
    if background == "static":
        randomise_background(dvip.decoder)
    x = torch.rand(3, 3, C, S, S, generator=torch.Generator().manual_seed(1))
    result = check_elbo(dvip, x, num_particles=10)
    assert result.passed, result.format()


def test_train_records_it_and_load_rebuilds_it(tmp_path):
    out = tmp_path / "run"
    args = [*TRACKING, "--residual-width", 2, "--out", out, "--quiet"]
    result = run_cli("train", *tiny_args(steps=2), *args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["encoder"], config["residual_width"]) == ("tracking", 2)
    model = load(out)
    assert model.tracking and len(model.residual_encoders) == config["factors"] - 1
    state = torch.load(sorted((out / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    for name, value in model.state_dict().items():
        assert torch.equal(value, state["model"][name]), name


@pytest.mark.parametrize(
    "args,message",
    [
        (["--encoder", "tracking"], "Invalid value for '--encoder': tracking needs --decoder "
         "additive with --decoder-sum sigmoids, or --decoder composite"),
        (["--encoder", "paper", "--residual-width", "2"], "Invalid value for '--residual-width'"
         ": applies to --encoder residual or tracking only"),
    ],
)  # fmt: skip
def test_bad_combinations_are_one_line_errors(tmp_path, args, message):
    result = run_cli("train", *tiny_args(steps=1), *args, "--out", tmp_path / "bad")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "bad").exists()
