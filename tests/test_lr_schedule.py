"""The learning-rate and KL schedules (train.lr_at, train.kl_scale_at) against values worked out
by hand from their documented definitions."""

import importlib
import json
import re

import pytest
import torch
from conftest import TINY, run_cli, tiny_args

from pyro_dvip.checkpoint import list_checkpoints, load_checkpoint
from pyro_dvip.config import make_config
from pyro_dvip.train import kl_scale_at, lr_at, lr_decay_interval, train


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
    assert make_config("cpu-objects-paper").lr_schedule == "cosine"
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
    assert "'--lr-schedule': must be one of constant, cosine, step, got 'exponential'" in (
        result.output
    )


def test_a_longer_cosine_decay_is_the_longer_schedule_cut_short():
    # steps 4 of a decay over 12: the learning rates of a 12-step cosine's first 4 steps,
    # (1 + cos(pi (s - 1) / 12)) / 2 = 1, (1 + cos 15°) / 2, (1 + cos 30°) / 2, (1 + cos 45°) / 2
    cut = make_config(lr=1.0, steps=4, lr_schedule="cosine", lr_decay_steps=12)
    expected = [1.0, (1 + 0.9659258262890683) / 2, (1 + 3**0.5 / 2) / 2, (1 + 2**-0.5) / 2]
    assert [lr_at(s, cut) for s in range(1, 5)] == pytest.approx(expected, rel=1e-12)
    full = make_config(lr=1.0, steps=12, lr_schedule="cosine")
    assert [lr_at(s, cut) for s in range(1, 5)] == [lr_at(s, full) for s in range(1, 5)]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(steps=5, lr_schedule="cosine", lr_decay_steps=4), "must be at least steps (5)"),
        (dict(lr_schedule="constant", lr_decay_steps=100), "only the cosine schedule"),
        (dict(lr_schedule="step", lr_decay_steps=100), "only the cosine schedule"),
    ],
)
def test_lr_decay_steps_errors_name_the_option(options, message):
    with pytest.raises(ValueError, match=rf"^lr_decay_steps: .*{re.escape(message)}"):
        make_config(**options)


def test_a_run_with_a_longer_decay_equals_the_longer_run_stopped_with_until(tmp_path):
    # What cpu-objects relies on: steps S of a decay over H trains exactly what a run of H
    # steps stopped with --until S trained (same weights, bit for bit).
    cut = train(make_config(**TINY, steps=3, lr_schedule="cosine", lr_decay_steps=9),
                tmp_path / "cut", progress=False)  # fmt: skip
    stopped = train(make_config(**TINY, steps=9, lr_schedule="cosine"), tmp_path / "stopped",
                    until=3, progress=False)  # fmt: skip
    assert cut.step == stopped.step == 3
    a, b = (load_checkpoint(list_checkpoints(tmp_path / run)[-1]) for run in ("cut", "stopped"))
    assert a["step"] == b["step"] == 3
    assert a["model"].keys() == b["model"].keys()
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert [r["elbo"] for r in cut.metrics] == [r["elbo"] for r in stopped.metrics]


def test_resuming_past_the_decay_needs_a_longer_decay(tmp_path):
    args = [*tiny_args(steps=2), "--lr-schedule", "cosine", "--lr-decay-steps", 3, "--quiet"]
    assert run_cli("train", *args, "--out", tmp_path).exit_code == 0
    past = run_cli("train", "--out", tmp_path, "--resume", "--steps", 4)
    assert past.exit_code != 0 and "'--lr-decay-steps': must be at least steps (4)" in past.output
    assert list_checkpoints(tmp_path)[-1].name.endswith("2.pt")  # nothing saved is lost
    longer = run_cli("train", "--out", tmp_path, "--resume", "--steps", 4, "--lr-decay-steps", 4)
    assert longer.exit_code == 0, longer.output
    assert json.loads((tmp_path / "config.json").read_text())["lr_decay_steps"] == 4


def test_lr_decay_steps_on_the_command_line_is_a_one_line_error_off_the_cosine(tmp_path):
    result = run_cli("train", *tiny_args(steps=2), "--lr-decay-steps", 5, "--out", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'--lr-decay-steps': only the cosine schedule has a length" in result.output
    assert not (tmp_path / "config.json").exists()
    zero = run_cli("train", *tiny_args(steps=2), "--lr-decay-steps", 0, "--out", tmp_path)
    assert zero.exit_code == 2 and "Invalid value for '--lr-decay-steps'" in zero.output
