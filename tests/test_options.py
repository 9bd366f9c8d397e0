"""Every option is declared once, on its TrainConfig field: `dvip train` and `dvip check-elbo`
are made from the fields, checked here from the dataclass itself."""

import dataclasses
import re

import pytest
from conftest import run_cli, tiny_args

from dvip_cli.check_elbo import check_elbo
from dvip_cli.train import train
from pyro_dvip.config import DATA, MODEL, RETIRED, TrainConfig, make_config

RUN_CONTROLS = {"preset", "out", "resume", "until", "quiet", "nproc"}
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def visible(command):
    return {p.name: p for p in command.params if not getattr(p, "hidden", False)}


def test_every_field_is_a_train_option_with_help_and_nothing_else_is():
    options = visible(train)
    assert set(options) == set(FIELDS) | RUN_CONTROLS
    for name in set(FIELDS) - {"preset"}:
        assert options[name].help and "[default: " in options[name].help, name
        assert options[name].opts[0] == "--" + name.replace("_", "-")
    assert {p.name for p in train.params if p.hidden} == set(RETIRED)


def test_a_help_shows_the_fields_default_and_its_choices():
    options = visible(train)
    for name, f in FIELDS.items():
        if name == "preset" or f.metadata["default_text"] is not None:
            continue
        shown = re.search(r"\[default: ([^\]]+)\]$", options[name].help).group(1)
        default = f.default
        expected = {True: "on", False: "off"}.get(default) if isinstance(default, bool) else (
            f"{default:g}" if isinstance(default, float) else str(default)
        )
        assert shown == expected, name
        if f.metadata["choices"]:
            assert options[name].metavar == "[" + "|".join(map(str, f.metadata["choices"])) + "]"


def test_check_elbo_takes_the_model_and_data_fields():
    expected = {n for n, f in FIELDS.items() if f.metadata.get("group") in (MODEL, DATA)}
    own = {"run_dir", "particles", "batch_size", "seq_len", "derivation", "dtype", "seed",
           "json_path", "preset", "device"}  # fmt: skip
    assert set(visible(check_elbo)) == expected | own


@pytest.mark.parametrize(
    "args,message",
    [
        (["--image-size", "20"], "'--image-size': must be one of 16, 32, 64, 128, 256, got 20"),
        (["--obs-var", "0"], "'--obs-var': must be > 0, got 0.0"),
        (["--test-fraction", "1"], "'--test-fraction': must be < 1, got 1.0"),
        (["--arena", "square"], "'--arena': must be one of box, circle, got 'square'"),
        (["--kl-anneal", "-1"], "'--kl-anneal': must be >= 0, got -1"),
        (["--factors", "x"], "'x' is not a valid integer"),
    ],
)  # fmt: skip
def test_the_configuration_checks_a_value_and_the_error_names_the_option(tmp_path, args, message):
    result = run_cli("train", *tiny_args(steps=1), *args, "--out", tmp_path / "bad")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "bad").exists()


def test_the_library_checks_the_same_ranges_as_the_command():
    with pytest.raises(ValueError, match="test_fraction: must be < 1, got 1"):
        make_config(test_fraction=1.0)
    with pytest.raises(ValueError, match="num_digits: must be one of 1, 2, 3, got 4"):
        make_config(num_digits=4)


def test_nproc_relaunches_the_same_options_with_each_booleans_own_switch(monkeypatch, tmp_path):
    import dvip_cli.train as cli_train

    calls = []
    monkeypatch.setattr(cli_train.subprocess, "call", lambda command: calls.append(command) or 0)
    args = ["--factored", "--no-encoder-linear-act", "--compile", "--decoder", "additive",
            "--batch-size", "4", "--steps", "2", "--nproc", "2"]  # fmt: skip
    result = run_cli("train", *args, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    (command,) = calls
    relaunched = command[command.index("train") + 1 :]
    assert relaunched == ["--out", str(tmp_path / "run"), "--batch-size", "4", "--compile",
                          "--decoder", "additive", "--no-encoder-linear-act", "--factored",
                          "--steps", "2"]  # fmt: skip
