"""The residual encoder (--encoder residual, beyond the paper): block k > 1 of the posterior
reads the frame minus what the blocks before it draw."""

import json

import pytest
import torch
from conftest import run_cli, tiny_args
from pyro import poutine

from pyro_dvip import DVIP, check_elbo, load
from pyro_dvip.decoders import AdditiveDecoder
from pyro_dvip.networks import PosteriorHead

S, K, d = 16, 3, 2


def residual_model(encoder="residual", parts=K, dim=d):
    decoder = lambda: AdditiveDecoder(3, S, parts, dim, width=4)  # noqa: E731
    return DVIP(parts, dim, image_size=S, width=4, transition_layers=1, decoder=decoder,
                encoder=encoder)  # fmt: skip


def test_each_block_reads_the_frame_minus_the_layers_of_the_blocks_before_it():
    torch.manual_seed(0)
    dvip = residual_model().eval()
    x = torch.rand(4, 1, 3, S, S)
    guide = poutine.trace(dvip.guide).get_trace(x)
    got = guide.nodes["z_1"]["fn"].base_dist.loc  # (B, K, d); at t = 1 the prior is N(0, I)
    zeros = torch.zeros(4, K * d)
    with torch.no_grad():
        loc, _ = dvip.posterior.head(dvip.encoder(x[:, 0]), zeros, zeros)
        want, drawn = [loc[:, :d]], torch.zeros_like(x[:, 0])
        for k in range(1, K):
            alone = torch.zeros(4, K * d)  # block k-1 alone: its generator's layer
            alone[:, (k - 1) * d : k * d] = want[-1]
            drawn = drawn + torch.sigmoid(dvip.decoder.generators(alone)[:, k - 1])
            h = dvip.posterior.encoders[k - 1](x[:, 0] - drawn)
            loc, _ = dvip.posterior.head(h, zeros, zeros)
            want.append(loc[:, k * d : (k + 1) * d])
    torch.testing.assert_close(got, torch.stack(want, 1))
    # not the paper's posterior, which reads the frame for every block
    paper, _ = dvip.posterior.head(dvip.encoder(x[:, 0]), zeros, zeros)
    assert not torch.allclose(got[:, 1:], paper.view(4, K, d)[:, 1:], atol=1e-3)


def test_the_guides_renderings_leave_the_decoders_batchnorm_statistics_alone():
    torch.manual_seed(0)
    dvip = residual_model().train()
    before = {n: b.clone() for n, b in dvip.decoder.named_buffers()}
    encoders = {n: b.clone() for n, b in dvip.posterior.encoders.named_buffers()}
    poutine.trace(dvip.guide).get_trace(torch.rand(4, 2, 3, S, S))
    for name, value in dvip.decoder.named_buffers():
        assert torch.equal(value, before[name]), name
    changed = [n for n, b in dvip.posterior.encoders.named_buffers() if "running_mean" in n]
    assert changed and all(
        not torch.equal(dict(dvip.posterior.encoders.named_buffers())[n], encoders[n])
        for n in changed
    )  # the residual encoders themselves train as usual
    momenta = {m.momentum for m in dvip.decoder.modules() if hasattr(m, "momentum")}
    assert momenta == {0.1}  # restored


def test_the_paper_networks_draw_the_same_initial_weights_with_or_without_it():
    torch.manual_seed(5)
    plain = residual_model("paper")
    torch.manual_seed(5)
    residual = residual_model()
    assert isinstance(plain.posterior, PosteriorHead) and len(residual.posterior.encoders) == K - 1
    own = residual.state_dict()
    for name, value in plain.state_dict().items():
        name = name.replace("posterior.", "posterior.head.")  # the paper's head, block 1's
        assert torch.equal(value, own[name]), name


def test_check_elbo_passes_with_the_posterior_that_explains_away():
    torch.manual_seed(1)
    dvip = residual_model(parts=2, dim=3)
    x = torch.rand(3, 3, 3, S, S, generator=torch.Generator().manual_seed(1))
    result = check_elbo(dvip, x, num_particles=10)
    assert result.passed, result.format()


def test_the_check_elbo_command_reads_it():
    # accepted with --decoder additive: tests/test_decoders.py
    refused = run_cli("check-elbo", "--image-size", 16, "--encoder", "residual")
    assert refused.exit_code == 2 and "residual needs --decoder additive" in refused.output


def test_it_needs_a_per_factor_decoder():
    with pytest.raises(ValueError, match="encoder: residual needs a per-factor decoder"):
        DVIP(2, 3, image_size=S, width=4, encoder="residual")
    with pytest.raises(ValueError, match="encoder: must be one of paper, residual, glimpse, "):
        DVIP(2, 3, image_size=S, width=4, encoder="x")


def test_train_records_it_and_load_rebuilds_it(tmp_path):
    out = tmp_path / "run"
    args = ["--decoder", "additive", "--encoder", "residual", "--out", out, "--quiet"]
    result = run_cli("train", *tiny_args(steps=2), *args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["encoder"] == "residual"
    model = load(out)
    assert len(model.posterior.encoders) == 1
    state = torch.load(sorted((out / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    assert any(name.startswith("posterior.encoders.") for name in state["model"])
    for name, value in model.state_dict().items():
        assert torch.equal(value, state["model"][name]), name


@pytest.mark.parametrize(
    "args,message",
    [
        (["--encoder", "residual"], "Invalid value for '--encoder': residual needs --decoder "
         "additive or composite and --factors >= 2 (got decoder paper, 2 factors)"),
        (["--decoder", "additive", "--factors", "1", "--encoder", "residual"],
         "(got decoder additive, 1 factors)"),
        (["--encoder", "slots"], "'--encoder': must be one of paper, residual, glimpse, got "
         "'slots'"),
    ],
)  # fmt: skip
def test_bad_encoder_options_are_one_line_errors(tmp_path, args, message):
    result = run_cli("train", *tiny_args(steps=1), *args, "--out", tmp_path / "bad")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "bad").exists()
