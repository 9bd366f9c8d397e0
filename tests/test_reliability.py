"""Training survives signals, kills, bad numbers, bad files and bad options."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY, tiny_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dvip_cli.main import cli
from pyro_dvip import CheckpointError, RunError, load, make_config, train
from pyro_dvip.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from pyro_dvip.data import MovingMNIST


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def start_cli(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "dvip_cli", "train", *map(str, args), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def wait_for_rows(run_dir, n, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        path = run_dir / "metrics.csv"
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        time.sleep(0.05)
    raise AssertionError("training produced no metrics in time")


def wait_for_checkpoint(run_dir, proc, timeout=120):
    """Poll until the run's first checkpoint file is there (written whole, then renamed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if list_checkpoints(run_dir):
            return
        time.sleep(0.05)
    raise AssertionError("training wrote no checkpoint in time")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_resume_is_exact(tmp_path, signum):
    """A run configured for 100,000 steps cannot end before the signal reaches it: it is sent
    once step 3's checkpoint is on disk. The run stopped at step s and resumed to s + 4
    (--until) logs what a run trained straight to s + 4 logs."""
    # Every run in a subprocess with one thread: float reductions then match exactly.
    args = tiny_args(steps=100_000, checkpoint_every=3)
    out = tmp_path / "stopped"
    proc = start_cli(*args, "--out", out)
    wait_for_checkpoint(out, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert f"{signal.Signals(signum).name} at step" in err and "--resume" in err
    saved, state = latest_checkpoint(out)
    stopped_at = state["step"]
    assert stopped_at >= 3 and saved.name == f"step_{stopped_at:08d}.pt"
    until = stopped_at + 4

    whole = tmp_path / "whole"
    proc = start_cli(*args, "--until", until, "--out", whole)
    assert proc.wait(timeout=120) == 0
    proc = start_cli("--out", out, "--resume", "--until", until)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert f"resumed from {saved}" in output
    rows_whole, rows_resumed = read_metrics(whole), read_metrics(out)
    assert [int(r["step"]) for r in rows_whole] == list(range(1, until + 1))
    assert [r["step"] for r in rows_resumed] == [r["step"] for r in rows_whole]
    for a, b in zip(rows_whole, rows_resumed):
        assert (a["elbo"], a["objective_avg"], a["test_elbo"]) == (
            b["elbo"], b["objective_avg"], b["test_elbo"])  # fmt: skip


def test_kill_9_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = start_cli(
        *tiny_args(steps=100_000, checkpoint_every=1, keep_checkpoints=2), "--out", out
    )
    steps_seen = []
    for n in (5, 9, 14):  # kill, resume, kill again, at different points of the write cycle
        wait_for_rows(out, n, proc)
        time.sleep(0.01 * n)
        proc.kill()
        proc.wait()
        found = latest_checkpoint(out)
        assert found is not None
        steps_seen.append(found[1]["step"])
        proc = start_cli("--out", out, "--resume")
    proc.kill()
    proc.wait()
    assert steps_seen == sorted(steps_seen) and steps_seen[0] >= 1
    for path in list_checkpoints(out):
        torch.load(path, weights_only=True)  # every kept file is whole


def test_truncated_newest_checkpoint_is_detected_and_skipped(tmp_path, caplog):
    out = tmp_path / "run"
    train(make_config(**TINY, steps=4), out, progress=False)
    newest = list_checkpoints(out)[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(newest)
    missing = newest.with_name("step_00000099.pt")
    with pytest.raises(CheckpointError, match=r"step_00000099.pt: no such checkpoint file$"):
        load(out, checkpoint=missing)
    path, state = latest_checkpoint(out)
    assert state["step"] == 2 and "skipping" in caplog.text
    result = CliRunner().invoke(cli, ["train", "--out", str(out), "--resume", "--quiet"])
    assert result.exit_code == 0 and "step_00000002.pt" in result.output


class Payload:
    """Unpickling this would run code (create a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_carrying_pickled_code_is_refused(tmp_path):
    out = tmp_path / "run"
    train(make_config(**TINY, steps=2), out, progress=False)
    marker = tmp_path / "pwned"
    path = list_checkpoints(out)[-1]
    state = torch.load(path, weights_only=True)
    state["payload"] = Payload(str(marker))
    torch.save(state, path)  # a pickle that would call open(marker, "w") when loaded
    with pytest.raises(CheckpointError, match="refused, not a plain-tensor checkpoint"):
        load_checkpoint(path)
    with pytest.raises(RunError, match="no loadable checkpoint"):
        load(out)
    assert not marker.exists()


def poison_batches(monkeypatch, bad_calls):
    """Make the data stream return frames full of NaN on the calls (1-based) where
    ``bad_calls(n)`` is true."""
    sample = MovingMNIST.sample
    calls = {"n": 0}

    def sample_with_nan(self, batch_size):
        calls["n"] += 1
        batch = sample(self, batch_size)
        if bad_calls(calls["n"]):
            batch.frames = torch.full_like(batch.frames, float("nan"))
        return batch

    monkeypatch.setattr(MovingMNIST, "sample", sample_with_nan)


def test_non_finite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    poison_batches(monkeypatch, lambda n: n in (3, 4))  # call 1 builds the test set: steps 2, 3
    result = train(
        make_config(**{**TINY, "log_every": 2}, steps=6), tmp_path / "run", progress=False
    )
    rows = read_metrics(tmp_path / "run")
    assert [int(r["skipped_steps"]) for r in rows] == [1, 2, 2]
    assert rows[0]["elbo"] == "nan" and rows[2]["elbo"] != "nan"
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_persistent_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch
):
    poison_batches(monkeypatch, lambda n: n > 3)  # steps 3, 4, 5, ...
    config = make_config(**{**TINY, "log_every": 100}, steps=50, max_nonfinite_steps=3)
    with pytest.raises(
        RunError,
        match=r"step 5: loss or gradients non-finite for 3 steps in a row; stopped. "
        r"Last good checkpoint: .*step_00000004.pt",  # steps 3-4 skipped: step 2's weights
    ):
        train(config, tmp_path / "run", progress=False)
    step2, step4 = (load_checkpoint(p)["model"] for p in list_checkpoints(tmp_path / "run"))
    for name, value in step4.items():
        assert torch.equal(value, step2[name])  # skipped steps changed nothing, BatchNorm included
        assert not value.is_floating_point() or torch.isfinite(value).all()


def test_non_finite_parameters_are_never_saved(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite parameters"):
        save_checkpoint(tmp_path, 1, model, optimizer, {})
    assert list_checkpoints(tmp_path) == []


def test_unwritable_output_directory_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(cli, ["train", *tiny_args(steps=1), "--out", str(blocker / "run")])
    assert result.exit_code == 1
    assert "Error: --out: cannot write to" in result.output and "Traceback" not in result.output


OPTION_VALUES = {
    "--factors": st.one_of(st.integers(-2, 3), st.just("x")),
    "--factor-dim": st.integers(-1, 3),
    "--image-size": st.sampled_from(["8", "16", "24", "-16", "abc"]),
    "--width": st.integers(-1, 4),
    "--obs-var": st.sampled_from(["0", "-1", "0.25", "nan", "inf", "1e-9"]),
    "--batch-size": st.integers(-1, 3),
    "--seq-len": st.integers(-1, 3),
    "--lr": st.sampled_from(["0", "1e-3", "-1", "1e10"]),
    "--num-digits": st.integers(0, 4),
    "--channels": st.integers(0, 3),
    "--elbo": st.sampled_from(["trace", "meanfield", "bogus"]),
    "--kl-anneal": st.integers(-1, 2),
    "--digit-speed": st.sampled_from(["0", "3.6", "-1", "nan"]),
    "--preset": st.sampled_from(["cpu-demo", "nope"]),
    "--transition": st.sampled_from(["x", "os:path", "pyro_dvip:Transition", "a:b:c"]),
    "--device": st.sampled_from(["cpu", "tpu"]),
    "--precision": st.sampled_from(["fp32", "bf16", "fp16", "fp8"]),
}


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples in every CI run
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.dictionaries(st.sampled_from(sorted(OPTION_VALUES)), st.none(), max_size=5).flatmap(
        lambda keys: st.fixed_dictionaries({k: OPTION_VALUES[k] for k in keys})
    )
)
def test_no_option_combination_shows_a_traceback(tmp_path_factory, options):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    args = ["train", *tiny_args(steps=1, test_sequences=2, batch_size=2, seq_len=2)]
    for name, value in options.items():
        args += [name, str(value)]
    result = CliRunner().invoke(
        cli,
        [*args, "--out", str(out), "--quiet", "--image-size", "16"]
        if "--image-size" not in options
        else [*args, "--out", str(out), "--quiet"],
    )
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert len(error_lines) == 1, result.output
