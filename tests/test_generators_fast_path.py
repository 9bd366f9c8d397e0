"""The per-factor generators' pass (one generator at a time, transposed convolutions with a
backward written as convolutions) against the grouped layers they store, and the options
--decoder-width and --residual-width."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, tiny_args
from torch import nn

from pyro_dvip import DVIP, load, make_config
from pyro_dvip.build import build_model
from pyro_dvip.decoders import AdditiveDecoder, FactorGenerators
from pyro_dvip.tricks import TransposedConv

S, K, d = 16, 3, 2


def grouped_pass(generators: FactorGenerators, z: torch.Tensor) -> torch.Tensor:
    """The same generators run as the grouped layers they are stored as: PyTorch's own
    grouped convolutions and BatchNorm over all K groups' channels at once."""
    h = z.reshape(z.shape[0], -1, 1, 1)
    for layer in generators.deconv:
        if isinstance(layer, nn.ConvTranspose2d):
            h = F.conv_transpose2d(h, layer.weight, layer.bias, layer.stride, layer.padding,
                                   groups=layer.groups)  # fmt: skip
        else:
            h = layer(h)
    return h.reshape(z.shape[0], generators.num_parts, generators.out_channels, S, S)


def test_one_generator_at_a_time_equals_the_grouped_layers_values_gradients_and_statistics():
    torch.manual_seed(0)
    fast = FactorGenerators(K, d, 3, S, width=4).double()
    grouped = FactorGenerators(K, d, 3, S, width=4).double()
    grouped.load_state_dict(fast.state_dict())
    z = torch.randn(6, K * d, dtype=torch.float64)
    out_fast, out_grouped = fast(z), grouped_pass(grouped, z)
    assert torch.allclose(out_fast, out_grouped, atol=1e-12)
    weights = torch.randn_like(out_fast)
    (out_fast * weights).sum().backward()
    (out_grouped * weights).sum().backward()
    for (name, a), b in zip(fast.named_parameters(), grouped.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-10), name
    for (name, a), b in zip(fast.named_buffers(), grouped.buffers()):  # running statistics
        assert torch.allclose(a.double(), b.double(), atol=1e-12), name
    blocks = fast(z, [2, 0])  # blocks rendered alone are the same as rendered together
    assert torch.allclose(blocks, out_grouped[:, [2, 0]], atol=1e-12)


def test_under_bf16_autocast_the_gradients_are_the_grouped_layers_in_their_dtypes():
    torch.manual_seed(4)  # --precision bf16: the networks run under autocast
    fast = FactorGenerators(K, d, 3, S, width=4)
    grouped = FactorGenerators(K, d, 3, S, width=4)
    grouped.load_state_dict(fast.state_dict())
    z = torch.randn(6, K * d)
    for run in (fast, lambda v: grouped_pass(grouped, v)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = run(z)
        out.float().square().sum().backward()
    for (name, a), b in zip(fast.named_parameters(), grouped.parameters()):
        assert a.grad.dtype == a.dtype == torch.float32, name
        scale = b.grad.abs().max().clamp(min=1e-6)
        assert ((a.grad - b.grad).abs().max() / scale) < 0.05, name  # bf16 rounding


def test_transposed_convolution_gradients_are_autograds():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    for stride, padding in [((2, 2), (1, 1)), ((1, 1), (0, 0))]:
        conv = lambda x, w, b, s=stride, p=padding: TransposedConv.apply(x, w, b, s, p)  # noqa: E731
        assert torch.autograd.gradcheck(conv, (x, w, b), check_forward_ad=True)


def test_the_object_scores_forward_mode_jacobian_through_the_generators_is_reverse_modes():
    torch.manual_seed(3)  # the object score takes vmap(jacfwd(decoder)) at posterior samples
    dec = AdditiveDecoder(3, S, K, d, width=4).eval().double()
    z = torch.randn(4, K * d, dtype=torch.float64)
    mean = lambda v: dec(v[None])[0]  # noqa: E731
    forward = torch.func.vmap(torch.func.jacfwd(mean))(z)
    reverse = torch.stack([torch.autograd.functional.jacobian(mean, v) for v in z])
    assert forward.shape == (4, 3, S, S, K * d)
    assert torch.allclose(forward, reverse, atol=1e-12)


def test_a_narrower_generator_block_depends_on_its_own_factor_only():
    torch.manual_seed(2)
    # training mode: BatchNorm normalises by the batch, so no unit is dead at every row
    dec = AdditiveDecoder(3, S, K, d, width=2).double()
    z = torch.randn(16, K * d, dtype=torch.float64)
    for k in range(K):
        layer_sum = lambda v, k=k: dec.parts(v)["layers"][:, k].sum(0)  # noqa: E731
        jac = torch.autograd.functional.jacobian(layer_sum, z)
        per_block = jac.abs().sum(dim=tuple(range(jac.dim() - 2))).sum(0).view(K, d).sum(1)
        assert per_block[k] > 1e-4
        assert all(per_block[j] == 0 for j in range(K) if j != k)  # exactly: no path at all


def test_widths_set_the_channels_and_default_to_width():
    config = make_config(factors=2, factor_dim=3, image_size=16, width=8, decoder="additive",
                         encoder="residual")  # fmt: skip
    default = build_model(config)
    narrow = build_model(make_config(**{**vars(config), "preset": None, "decoder_width": 2,
                                        "residual_width": 4}))  # fmt: skip
    first_deconv = lambda m: m.decoder.generators.deconv[2]
    assert first_deconv(default).out_channels == 2 * 8 * 2  # K x 2 width channels at 4x4
    assert first_deconv(narrow).out_channels == 2 * 2 * 2
    assert default.posterior.encoders[0].conv[0].out_channels == 8
    assert narrow.posterior.encoders[0].conv[0].out_channels == 4
    assert narrow.encoder.conv[0].out_channels == 8  # the paper's encoder keeps --width


def test_residual_width_needs_the_residual_encoder():
    message = "residual_width: applies to encoder 'residual' only"
    with pytest.raises(ValueError, match=message):
        DVIP(2, 3, image_size=S, width=4, residual_width=2)


def test_train_records_the_widths_and_load_rebuilds_them(tmp_path):
    out = tmp_path / "run"
    args = ["--decoder", "additive", "--encoder", "residual", "--decoder-width", "2",
            "--residual-width", "3"]  # fmt: skip
    result = run_cli("train", *tiny_args(steps=2), *args, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["decoder_width"], config["residual_width"]) == (2, 3)
    model = load(out)
    assert model.decoder.generators.deconv[2].out_channels == 2 * 2 * 2
    assert model.posterior.encoders[0].conv[0].out_channels == 3
    state = torch.load(sorted((out / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    for name, value in model.state_dict().items():
        assert torch.equal(value, state["model"][name]), name


@pytest.mark.parametrize(
    "args,message",
    [
        (["--decoder", "additive", "--decoder-width", "0"], "'--decoder-width': must be >= 1, "
         "got 0"),
        (["--decoder-width", "4"], "'--decoder-width': applies to --decoder additive, "
         "composite or glimpse only"),
        (["--decoder", "additive", "--residual-width", "4"], "'--residual-width': applies to "
         "--encoder residual only"),
        (["--residual-width", "-1"], "'--residual-width': must be >= 1, got -1"),
    ],
)  # fmt: skip
def test_bad_width_options_are_one_line_errors_naming_the_option(args, message):
    result = run_cli("train", *tiny_args(steps=1), *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
