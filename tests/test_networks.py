"""The encoder's output against the authors' layout, and old runs keeping the encoder they were
trained with."""

import json

import torch
from conftest import TINY, run_cli, tiny_args
from torch import nn
from torch.nn import functional as F

from pyro_dvip.build import build_model
from pyro_dvip.config import TrainConfig, make_config
from pyro_dvip.networks import LEAKY_SLOPE, Encoder


def _frames(n=6, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_encoder_ends_in_a_plain_linear_as_in_the_authors_code():
    torch.manual_seed(0)
    encoder = Encoder(3, 16, z_dim=8, width=4).eval()
    x = _frames()
    convs = [m for m in encoder.conv if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3  # 16 -> 8 -> 4, then 4x4 -> 1x1
    h = x
    for conv, bn in zip(convs[:-1], [m for m in encoder.conv if isinstance(m, nn.BatchNorm2d)]):
        h = F.leaky_relu(bn(conv(h)), LEAKY_SLOPE)
    h = F.leaky_relu(convs[-1](h), LEAKY_SLOPE).flatten(1)  # (N, z_dim)
    expected = h @ encoder.fc.weight.T + encoder.fc.bias  # no activation after the Linear
    torch.testing.assert_close(encoder(x), expected)
    assert (encoder(x) < -0.05).any()  # a leaky ReLU would have shrunk these by 5x


def test_the_old_encoder_loads_the_same_weights_and_adds_only_a_leaky_relu():
    torch.manual_seed(0)
    new = Encoder(3, 16, z_dim=8, width=4).eval()
    old = Encoder(3, 16, z_dim=8, width=4, linear_act=True).eval()
    old.load_state_dict(new.state_dict())  # strict: the same parameters and buffers
    assert new.state_dict().keys() == old.state_dict().keys()
    x = _frames()
    torch.testing.assert_close(old(x), F.leaky_relu(new(x), LEAKY_SLOPE))


def test_runs_saved_before_the_option_keep_the_old_encoder(tmp_path):
    saved = json.loads(make_config(**TINY).to_json())
    del saved["encoder_linear_act"]  # as every config.json written before the option
    (tmp_path / "config.json").write_text(json.dumps(saved))
    old = TrainConfig.load(tmp_path / "config.json")
    assert old.encoder_linear_act is True
    assert make_config(**TINY).encoder_linear_act is False  # new runs: the authors' encoder
    for preset in ("cpu-objects", "cpu-objects-paper"):  # the measured recipes
        assert make_config(preset).encoder_linear_act is True
    torch.manual_seed(0)
    new_model = build_model(make_config(**TINY)).eval()
    old_model = build_model(old).eval()
    old_model.load_state_dict(new_model.state_dict())
    x = _frames()
    torch.testing.assert_close(
        old_model.encoder(x), F.leaky_relu(new_model.encoder(x), LEAKY_SLOPE)
    )


def test_encoder_linear_act_option_reaches_the_run_config(tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    result = run_cli("train", *tiny_args(steps=1), "--encoder-linear-act", "--quiet", "--out", on)
    assert result.exit_code == 0, result.output
    assert json.loads((on / "config.json").read_text())["encoder_linear_act"] is True
    result = run_cli("train", *tiny_args(steps=1), "--quiet", "--out", off)
    assert json.loads((off / "config.json").read_text())["encoder_linear_act"] is False
    bad = run_cli("train", *tiny_args(steps=1), "--encoder-linear-act=yes", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "--encoder-linear-act" in bad.output


def test_encoder_linear_act_passes_through_torchrun(tmp_path, monkeypatch):
    import dvip_cli.train

    launched = []
    monkeypatch.setattr(dvip_cli.train.subprocess, "call", lambda cmd: launched.append(cmd) or 0)
    for flag in ("--encoder-linear-act", "--no-encoder-linear-act"):
        result = run_cli("train", *tiny_args(), "--nproc", 2, flag, "--out", tmp_path / "r")
        assert result.exit_code == 0, result.output
        assert flag in launched[-1] and "True" not in launched[-1] and "False" not in launched[-1]


def test_compare_groups_an_old_run_with_new_runs_of_the_old_encoder():
    from pathlib import Path

    from pyro_dvip.evaluation.compare import group_runs

    config = json.loads(make_config(**TINY).to_json())
    old = {k: v for k, v in config.items() if k != "encoder_linear_act"}
    groups = group_runs({
        Path("old-s0"): {"config": {**old, "seed": 0}},
        Path("act-s1"): {"config": {**config, "encoder_linear_act": True, "seed": 1}},
        Path("paper-s0"): {"config": config},
    })  # fmt: skip
    assert sorted(map(sorted, groups.values())) == [
        [Path("act-s1"), Path("old-s0")], [Path("paper-s0")]
    ]  # fmt: skip
