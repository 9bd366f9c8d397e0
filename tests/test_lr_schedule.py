"""The learning-rate and KL schedules (train.lr_at, train.kl_scale_at) against values worked out
by hand from their documented definitions."""

import importlib
import json

import pytest
from conftest import run_cli, tiny_args

from pyro_dvip.checkpoint import list_checkpoints, load_checkpoint
from pyro_dvip.config import make_config
from pyro_dvip.train import kl_scale_at, lr_at, lr_decay_interval


@pytest.mark.parametrize(
    "batch_size, step, decays",
    [
        # 320,000 sequences = 3,200 steps of 100: steps 1..3200 see fewer than that before them.
        (100, 1, 0), (100, 3200, 0), (100, 3201, 1), (100, 6400, 1), (100, 6401, 2),
        (100, 32_001, 10),
        (32, 10_000, 0), (32, 10_001, 1),
        # 48 does not divide 320,000: 6,667 steps have seen 320,016 sequences before step 6,668.
        (48, 6667, 0), (48, 6668, 1), (48, 13_334, 1), (48, 13_335, 2),
    ],
)  # fmt: skip
def test_step_schedule_decays_by_0985_every_320k_sequences(batch_size, step, decays):
    config = make_config(lr=3e-4, batch_size=batch_size, lr_schedule="step")
    assert lr_at(step, config) == pytest.approx(3e-4 * 0.985**decays, rel=1e-12)


def test_step_schedule_interval_is_320k_sequences_over_the_batch():
    assert lr_decay_interval(100) == 3200
    assert lr_decay_interval(32) == 10_000
    assert lr_decay_interval(48) == pytest.approx(6666.667, abs=1e-3)


def test_paper_presets_use_the_authors_decay_and_others_do_not():
    for preset in ("paper-mnist", "paper-mnist-entangled", "paper-video"):
        config = make_config(preset)
        assert config.lr_schedule == "step"
        assert lr_at(3200, config) == 3e-4 and lr_at(3201, config) == pytest.approx(3e-4 * 0.985)
    assert make_config().lr_schedule == "constant"
    assert make_config("cpu-demo").lr_schedule == "constant"
    assert make_config("cpu-objects").lr_schedule == "cosine"


def test_cosine_reaches_zero_one_step_after_the_last():
    steps = 4
    config = make_config(lr=1e-3, steps=steps, lr_schedule="cosine")
    # (1 + cos(pi - pi/4)) / 2 = (1 - cos(pi/4)) / 2 = (1 - 1/sqrt(2)) / 2
    assert lr_at(steps, config) == pytest.approx(1e-3 * (1 - 2**-0.5) / 2)
    assert lr_at(steps, config) > 0
    assert lr_at(steps + 1, config) == pytest.approx(0.0, abs=1e-18)
    assert lr_at(1, config) == 1e-3


def test_kl_anneal_starts_at_one_over_n_and_reaches_one_at_n():
    assert [kl_scale_at(s, 4) for s in (1, 2, 3, 4, 5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert kl_scale_at(1, 0) == 1.0  # off


def test_step_schedule_is_recorded_and_resume_continues_it(tmp_path, monkeypatch):
    # A decay every step at batch 4 (4 sequences), so that a tiny run sees three of them.
    monkeypatch.setattr(importlib.import_module("pyro_dvip.train"), "LR_DECAY_SEQUENCES", 4)
    out = tmp_path / "run"
    args = [*tiny_args(steps=4, lr=1e-3), "--lr-schedule", "step", "--quiet"]
    assert run_cli("train", *args, "--until", 2, "--out", out).exit_code == 0
    assert json.loads((out / "config.json").read_text())["lr_schedule"] == "step"
    result = run_cli("train", "--out", out, "--resume", "--quiet")
    assert result.exit_code == 0, result.output
    # Step s has seen 4 (s - 1) sequences before it: s - 1 decays.
    lrs = {
        (state := load_checkpoint(path))["step"]: state["optimizer"]["param_groups"][0]["lr"]
        for path in list_checkpoints(out)
    }
    assert lrs == pytest.approx({2: 1e-3 * 0.985, 4: 1e-3 * 0.985**3})


def test_unknown_schedule_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="lr_schedule: must be one of constant, cosine, step"):
        make_config(lr_schedule="exponential")
    result = run_cli(
        "train", *tiny_args(), "--lr-schedule", "exponential", "--out", tmp_path / "run"
    )
    assert result.exit_code == 2
    assert "'exponential' is not one of 'constant', 'cosine', 'step'" in result.output
