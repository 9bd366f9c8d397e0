import csv
import json
import math

import pytest
import torch
from conftest import TINY, run_cli, tiny_args

from pyro_dvip import TrainConfig, load, make_config, train
from pyro_dvip.build import make_data
from pyro_dvip.checkpoint import list_checkpoints
from pyro_dvip.objective import NegELBO
from pyro_dvip.objective import test_elbo as held_out_elbo


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_train_three_steps_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", *tiny_args(steps=3), "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"run directory: {out}" in result.output

    config = json.loads((out / "config.json").read_text())
    assert set(config) == set(TrainConfig.__dataclass_fields__)
    assert config["steps"] == 3 and config["factors"] == 2 and config["image_size"] == 16
    assert config["lr"] == 3e-4 and config["obs_var"] == 0.25  # paper defaults where not given

    rows = read_metrics(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    # pixels and decoder means lie in [0, 1], so log N(x | mean, 0.25) per pixel lies in
    # [-2 - c, -c] with c = log(2 pi 0.25) / 2: the per-frame reconstruction is bounded
    c, pixels = 0.5 * math.log(2 * math.pi * 0.25), 3 * 16 * 16
    for row in rows:
        assert -pixels * (2 + c) <= float(row["recon"]) <= -pixels * c
        per_factor = [float(v) for v in row["kl_factors"].split()]  # one per factor, 4 decimals
        assert len(per_factor) == 2
        assert sum(per_factor) == pytest.approx(float(row["kl"]), abs=1e-4 * 2 + 1e-6)
    # frames per second: B T frames a step, over the training seconds since the last row
    # (seconds rounded to 1 ms, frames/s to 0.1)
    seconds = [0.0] + [float(r["seconds"]) for r in rows]
    frames = TINY["batch_size"] * TINY["seq_len"]
    for row, before, after in zip(rows, seconds, seconds[1:]):
        slowest, fastest = (
            frames / (after - before + 1e-3),
            frames / max(after - before - 1e-3, 1e-9),
        )
        assert slowest - 0.05 <= float(row["frames_per_s"]) <= fastest + 0.05
    assert not rows[0]["test_elbo"]

    assert [p.name for p in list_checkpoints(out)] == ["step_00000002.pt", "step_00000003.pt"]
    # the test ELBO logged at a checkpoint step is that checkpoint's, on the run's test frames
    _, test_frames = make_data(TrainConfig.load(out / "config.json"), torch.device("cpu"))
    for row, path in zip(rows[1:], list_checkpoints(out)):
        expected = held_out_elbo(load(out, path), test_frames, TINY["batch_size"])
        assert float(row["test_elbo"]) == pytest.approx(expected, rel=1e-6)
    state = torch.load(list_checkpoints(out)[-1], weights_only=True)
    assert state["step"] == 3 and {"model", "optimizer", "rng", "data"} <= set(state)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_load_gives_the_same_loss_as_before_saving(tmp_path):
    config = make_config(**TINY, steps=3)
    result = train(config, tmp_path / "run", progress=False)
    trained = result.model.eval()
    loaded = load(tmp_path / "run")
    assert not loaded.training
    x = torch.rand(4, 3, 3, 16, 16)

    def loss(model):
        torch.manual_seed(7)
        with torch.no_grad():
            return NegELBO(model)(x).item()

    assert loss(loaded) == loss(trained)


def test_resume_continues_the_same_run_step_for_step(tmp_path):
    whole = tmp_path / "whole"
    assert run_cli("train", *tiny_args(steps=6), "--out", whole, "--quiet").exit_code == 0
    parts = tmp_path / "parts"
    assert run_cli("train", *tiny_args(steps=4), "--out", parts, "--quiet").exit_code == 0
    # a run logged before the kl_factors column: resuming it keeps its rows under the new header
    old = [{k: v for k, v in r.items() if k != "kl_factors"} for r in read_metrics(parts)]
    with open(parts / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(old[0]))
        writer.writeheader()
        writer.writerows(old)
    result = run_cli("train", "--out", parts, "--resume", "--steps", 6, "--quiet")
    assert result.exit_code == 0, result.output

    rows_whole, rows_parts = read_metrics(whole), read_metrics(parts)
    assert [int(r["step"]) for r in rows_parts] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(rows_whole, rows_parts):
        assert (a["step"], a["elbo"], a["test_elbo"]) == (b["step"], b["elbo"], b["test_elbo"])
    assert [bool(r["kl_factors"]) for r in rows_parts] == [False] * 4 + [True] * 2
    assert rows_parts[-1]["kl_factors"] == rows_whole[-1]["kl_factors"]
    assert json.loads((parts / "config.json").read_text())["steps"] == 6


def test_until_stops_part_way_on_the_whole_runs_schedule_and_resume_finishes_it(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    args = [*tiny_args(steps=6, lr=1e-3), "--lr-schedule", "cosine", "--kl-anneal", 4, "--quiet"]
    assert run_cli("train", *args, "--out", whole).exit_code == 0
    result = run_cli("train", *args, "--until", 3, "--out", parts)
    assert result.exit_code == 0, result.output
    assert (
        f"stopped at step 3 of 6 (--until); continue with --out {parts} --resume" in result.output
    )
    assert json.loads((parts / "config.json").read_text())["steps"] == 6  # the schedule's length
    assert list_checkpoints(parts)[-1].name == "step_00000003.pt"
    rows = read_metrics(parts)
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and rows[-1]["test_elbo"]
    again = run_cli("train", "--out", parts, "--resume", "--until", 2, "--quiet")
    assert again.exit_code == 0 and len(read_metrics(parts)) == 3  # already past: no step
    done = run_cli("train", "--out", parts, "--resume", "--quiet")
    assert done.exit_code == 0 and "--until" not in done.output
    rows_whole, rows_parts = read_metrics(whole), read_metrics(parts)
    assert [int(r["step"]) for r in rows_parts] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(rows_whole, rows_parts):  # the same steps, losses and schedules
        assert (a["step"], a["elbo"], a["kl_scale"]) == (b["step"], b["elbo"], b["kl_scale"])
    bad = run_cli("train", *args, "--until", 7, "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "'--until'" in bad.output and "from 1 to steps (6)" in bad.output
    assert not (tmp_path / "bad").exists()


def test_cosine_schedule_falls_from_lr_to_zero_and_resumes_on_its_curve(tmp_path):
    from pyro_dvip.checkpoint import load_checkpoint
    from pyro_dvip.train import lr_at

    config = make_config(**TINY, steps=5, lr=1e-3, lr_schedule="cosine")
    assert [round(lr_at(s, config) / 1e-3, 4) for s in (1, 2, 3, 4, 5)] == [
        1.0, 0.9045, 0.6545, 0.3455, 0.0955
    ]  # fmt: skip
    assert lr_at(3, make_config(**TINY, steps=5, lr=1e-3)) == 1e-3  # constant by default
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    args = [*tiny_args(steps=5, lr=1e-3), "--lr-schedule", "cosine", "--quiet"]
    assert run_cli("train", *args, "--out", whole).exit_code == 0
    assert run_cli("train", *args, "--out", parts).exit_code == 0
    state = load_checkpoint(list_checkpoints(whole)[-1])
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(lr_at(5, config))
    # Interrupted after step 4 (its checkpoint kept), then resumed: the same step 5.
    (list_checkpoints(parts)[-1]).unlink()
    assert run_cli("train", "--out", parts, "--resume", "--quiet").exit_code == 0
    assert read_metrics(parts)[-1]["elbo"] == read_metrics(whole)[-1]["elbo"]


def test_resume_refuses_a_conflicting_option(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", *tiny_args(steps=2), "--out", out, "--quiet").exit_code == 0
    result = run_cli("train", "--out", out, "--resume", "--factors", 3, "--steps", 4)
    assert result.exit_code != 0
    assert "options conflict with the saved run: --factors (saved 2, given 3)" in result.output
    assert [int(r["step"]) for r in read_metrics(out)] == [1, 2]  # nothing saved was lost


def test_existing_run_directory_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", *tiny_args(steps=2), "--out", out, "--quiet").exit_code == 0
    before = (out / "metrics.csv").read_text()
    result = run_cli("train", *tiny_args(steps=2), "--out", out, "--quiet")
    assert result.exit_code != 0 and "already holds a run; pass --resume" in result.output
    assert (out / "metrics.csv").read_text() == before


def test_train_with_eight_factors_and_meanfield(tmp_path):
    out = tmp_path / "k8"
    result = run_cli(
        "train", *tiny_args(steps=1, factors=8), "--elbo", "meanfield", "--out", out, "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert load(out).transition.num_factors == 8


def test_entangled_flag_builds_one_factor_of_the_total_size(tmp_path):
    out = tmp_path / "ent"
    assert (
        run_cli("train", *tiny_args(steps=1), "--entangled", "--out", out, "--quiet").exit_code == 0
    )
    model = load(out)
    assert (model.num_factors, model.factor_dim) == (1, 6)


def test_presets_resolve_and_explicit_options_override():
    demo = make_config("cpu-demo")
    assert (demo.image_size, demo.width, demo.factors, demo.factor_dim) == (32, 16, 2, 10)
    paper = make_config("paper-video")
    assert (paper.factors, paper.factor_dim, paper.obs_var, paper.batch_size) == (8, 25, 0.05, 100)
    assert make_config("paper-mnist-entangled").model_factor_dim == 40
    assert make_config("cpu-demo", factors=3).factors == 3
    result = run_cli("presets", "cpu-demo")
    assert json.loads(result.output)["image_size"] == 32


@pytest.mark.parametrize(
    "args, message",
    [
        (["--factors", "0"], "Invalid value for '--factors'"),
        (["--image-size", "48"], "Invalid value for '--image-size': must be one of 16, 32, 64"),
        (["--obs-var", "0"], "Invalid value for '--obs-var'"),
        (["--preset", "nope"], "Invalid value for '--preset'"),
        (["--transition", "nowhere.module:Prior"], "cannot import module 'nowhere.module'"),
        (["--transition", "torch.nn:Linear"], "is not a pyro_dvip.Transition subclass"),
        (["--num-digits", "3", "--channels", "2"], "Invalid value for '--channels'"),
        (["--resume"], "--resume needs --out"),
        (["--lr-schedule", "exponential"], "Invalid value for '--lr-schedule'"),
        (
            ["--precision", "fp8"],
            "Invalid value for '--precision': must be one of fp32, bf16, fp16, got 'fp8'",
        ),
    ],
)
def test_bad_options_get_a_one_line_error_naming_the_option(args, message):
    result = run_cli("train", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_mnist_root_is_an_option_error(tmp_path):
    result = run_cli(
        "train", *tiny_args(steps=1), "--mnist-root", tmp_path / "none", "--out", tmp_path / "run"
    )
    assert result.exit_code == 2
    assert (
        "Invalid value for '--mnist-root'" in result.output and "never downloaded" in result.output
    )


def test_fp16_on_the_cpu_is_a_one_line_error_before_anything_is_written(tmp_path):
    result = run_cli("train", *tiny_args(steps=1), "--precision", "fp16", "--device", "cpu",
                     "--out", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --precision: fp16 trains with a CUDA gradient scaler; on the CPU use bf16 or fp32"
    )
    assert not (tmp_path / "run" / "config.json").exists()


def test_precision_and_compile_are_recorded_and_may_change_on_resume(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", *tiny_args(steps=2), "--precision", "bf16", "--out", out,
                   "--quiet").exit_code == 0  # fmt: skip
    assert json.loads((out / "config.json").read_text())["precision"] == "bf16"
    result = run_cli("train", "--out", out, "--resume", "--steps", "3", "--precision", "fp32",
                     "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["precision"] == "fp32" and config["compile"] is False and config["steps"] == 3


def test_a_long_cpu_run_says_once_what_it_will_cost_and_a_short_one_says_nothing(
    tmp_path, monkeypatch
):
    import sys

    training = sys.modules["pyro_dvip.train"]  # the module (the package exports its train)

    # the paper's size on 2 cores: 2.7 s a step for 10,000 steps is 7.5 hours
    notice = training.cost_notice(2.7, 10_000)
    assert "2.70 s a step: 7.5 hours for the 10000 steps left" in notice
    assert "--preset cpu-sprites" in notice and "--until STEP" in notice
    assert training.cost_notice(0.1, 1000) is None  # 1.7 minutes
    assert "40 minutes" in training.cost_notice(0.24, 10_000)
    video = training.cost_notice(2.7, 10_000, video=True)
    assert "--preset cpu-video" in video and "cpu-sprites" not in video
    # a run already on a quick preset (here with eight factors) is not sent to it again
    own = training.cost_notice(0.6, 3000, preset="cpu-sprites")
    assert "30 minutes for the 3000 steps left" in own
    assert "--preset cpu-sprites costs more with more --factors" in own
    assert "For objects in minutes" not in own and "--until STEP" in own
    assert "For objects in minutes" in training.cost_notice(2.7, 10_000, preset="cpu-demo")
    said = []
    monkeypatch.setattr(training, "_say", lambda text, bar: said.append(text))
    monkeypatch.setattr(training, "COST_NOTICE_MINUTES", 0)  # any run is "long"
    train(make_config(**TINY, steps=12), tmp_path / "long", progress=False)
    assert len(said) == 1 and f"for the {12 - 1 - training.COST_STEPS} steps left" in said[0]
    monkeypatch.setattr(training, "COST_NOTICE_MINUTES", 1e9)
    train(make_config(**TINY, steps=12), tmp_path / "short", progress=False)
    assert len(said) == 1
