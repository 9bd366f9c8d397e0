"""Options that were retired: a one-line error naming the option and the commit that has it,
from the command line and from a saved run; at their neutral value they still load."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, tiny_args

from pyro_dvip import RunError, load
from pyro_dvip.config import RETIRED, RETIRED_COMMIT, RETIRED_VALUES, make_config

SAVED = Path(__file__).parent / "fixtures" / "saved_runs"

# (arguments, the option's name in the error)
RETIRED_ARGS = [
    (["--free-bits", "0.5"], "--free-bits"),
    (["--identity-cue", "0.5", "--channels", "1"], "--identity-cue"),
    (["--decoder", "additive", "--decoder-sum", "logits"], "--decoder-sum"),
    (["--decoder", "additive", "--decoder-init", "grey"], "--decoder-init"),
    (["--decoder", "additive", "--decoder-weights", "shared"], "--decoder-weights"),
    (["--scene", "discs", "--disc-background", "black"], "--disc-background"),
    (["--decoder", "additive", "--encoder", "tracking"], "--encoder"),
    (["--scene", "discs", "--disc-colours", "f08c1e,285ae6"], "--disc-colours"),
]
# retired values of live options retired later, each with the last commit that has it
LATER = [
    (["--decoder", "glimpse", "--encoder", "glimpse", "--glimpse-match", "opacity"],
     "--glimpse-match", "7593d33"),
]  # fmt: skip


def test_every_retired_option_is_covered_here():
    assert {f"--{name.replace('_', '-')}" for name in RETIRED} <= {o for _, o in RETIRED_ARGS}


@pytest.mark.parametrize(
    "args,option,commit", [(*case, RETIRED_COMMIT) for case in RETIRED_ARGS] + LATER
)
def test_a_retired_option_is_a_one_line_error_naming_it_and_the_commit(
    tmp_path, args, option, commit
):
    result = run_cli("train", *tiny_args(steps=1), *args, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and f"'{option}'" in error[0] and commit in error[0], error
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_old_commands_with_a_retired_option_at_its_neutral_value_still_run(tmp_path):
    args = ["--decoder", "additive", "--decoder-weights", "per-factor", "--decoder-init",
            "black", "--decoder-sum", "sigmoids", "--free-bits", "0"]  # fmt: skip
    result = run_cli("train", *tiny_args(steps=1), *args, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert not set(saved) & set(RETIRED) and saved["decoder"] == "additive"


def test_neutral_values_depend_on_the_decoder():
    assert make_config(decoder_weights="shared", decoder_init="grey").decoder == "paper"
    with pytest.raises(ValueError, match="decoder_weights: 'shared' is not possible now"):
        make_config(decoder="composite", decoder_weights="shared")


@pytest.mark.parametrize(
    "key,value,loads",
    [("free_bits", 0.0, True), ("free_bits", 1.0, False), ("identity_cue", 0.3, False),
     ("encoder", "tracking", False), ("decoder_sum", "sigmoids", True),
     ("glimpse_match", "opacity", False)],
)  # fmt: skip
def test_a_saved_run_with_a_retired_option_loads_at_its_neutral_value_only(
    tmp_path, key, value, loads
):
    run = tmp_path / "run"
    shutil.copytree(SAVED / "paper", run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, key: value}))
    if loads:
        assert load(run).num_factors == config["factors"]
        return
    commit = RETIRED_VALUES[key][2] if key in RETIRED_VALUES else RETIRED_COMMIT
    with pytest.raises((ValueError, RunError), match=f"{key}: .*{commit}"):
        load(run)
    result = run_cli("evaluate", run)
    assert result.exit_code != 0 and commit in result.output
    assert "Traceback" not in result.output


def test_a_resumed_run_accepts_a_retired_option_at_its_neutral_value(tmp_path):
    out = tmp_path / "run"
    first = run_cli("train", *tiny_args(steps=2), "--until", 1, "--out", out, "--quiet")
    assert first.exit_code == 0, first.output
    resumed = run_cli("train", "--out", out, "--resume", "--free-bits", "0", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert "step 2" in resumed.output
