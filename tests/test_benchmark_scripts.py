"""The prepared benchmark scripts run end to end at toy sizes and write the tables they
promise (their numbers are measured by running them, never in tests)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyro_dvip import make_config

ROOT = Path(__file__).resolve().parents[1]


def run_module(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_gpu_check_smoke_on_the_cpu_writes_one_row_per_measure(tmp_path):
    result = run_module("benchmarks.gpu_check", "--device", "cpu", "--smoke", "--variants", "fp32",
                        "--steps", "2", "--budget", "16", "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "gpu-check.json").read_text())["rows"]
    assert [r["measure"] for r in rows] == [
        "paper size, fp32", "largest batch, fp32", "largest batch, bf16",
        "cpu-objects, fp32", "cpu-objects-paper, fp32",
    ]  # fmt: skip
    assert all("error" not in r for r in rows), rows
    assert rows[0]["frames_per_s"] > 0 and rows[0]["batch"] == 4
    assert rows[1]["batch"] >= 4 and rows[1]["batch"] % 4 == 0  # doubled from the preset's
    assert rows[3]["steps_per_s"] > 0
    table = (tmp_path / "gpu-check.md").read_text()
    assert table.count("\n| ") == 1 + len(rows)  # the header and one line per measure


NO_GPU = "gpu_check: no CUDA device here (use --device cpu --smoke to try it)"


@pytest.mark.parametrize("entry", ["module", "script"])
def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path, entry):
    """With no CUDA device visible (CUDA_VISIBLE_DEVICES empty, whatever the machine has), the
    check stops before timing anything: exit status 1, one line on stderr, no table written."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable,
           "OUT": str(tmp_path)}  # fmt: skip
    if entry == "module":
        command = [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cuda",
                   "--out", str(tmp_path)]  # fmt: skip
    else:
        command = ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [NO_GPU]
    assert list(tmp_path.iterdir()) == []


class FakeClock:
    """time.perf_counter for benchmarks.step_speed: it moves only when a fake step runs."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def __getattr__(self, name):  # the rest of the time module (the date in the header)
        return getattr(time, name)


def fake_steppers(clock: FakeClock, durations: dict, calls: list):
    """A Stepper class whose instances, made in the order of ``durations``, take the next of
    their method's step durations (seconds) on the fake clock at every step."""
    names = iter(durations)

    class FakeStepper:
        def __init__(self, method, config, device, base=None):
            self.name, self.compile = next(names), False
            self.left = list(durations[self.name])

        def step(self, x):
            calls.append(self.name)
            clock.now += self.left.pop(0)

    return FakeStepper


def test_recipe_step_reports_the_medians_and_paired_ratios_of_the_step_times(tmp_path, monkeypatch):
    """Step times chosen by the test (binary fractions, so every sum is exact): the script
    reports each method's median step, the median over rounds of the paired ratios (1.5 here,
    where the ratio of the medians would be 0.83), and the run minutes at that step."""
    from benchmarks import recipe_step, step_speed

    clock, calls = FakeClock(), []
    durations = {  # first step (reported), one more warm-up step (not timed), 4 rounds
        "today": [5.0, 9.0, 3 / 8, 1 / 8, 1 / 4, 3 / 4],
        "paper-decoder": [3.0, 9.0, 1 / 4, 1 / 2, 1 / 8, 1 / 2],
    }
    monkeypatch.setattr(step_speed, "time", clock)
    monkeypatch.setattr(recipe_step, "Stepper", fake_steppers(clock, durations, calls))
    monkeypatch.setattr(sys, "argv", [
        "recipe_step", "--methods", "today", "paper-decoder", "--warmup", "2", "--repeats", "4",
        "--device", "cpu", "--threads", str(torch.get_num_threads()), "--out", str(tmp_path),
    ])  # fmt: skip
    recipe_step.main()

    today, paper = "today", "paper-decoder"
    # warm-up one method after the other, then rounds in a rotating order
    assert calls == [today] * 2 + [paper] * 2 + [today, paper, paper, today] * 2
    methods = json.loads((tmp_path / "recipe-step-cpu.json").read_text())["methods"]
    # medians: today (1/4 + 3/8) / 2 = 5/16 s, the paper decoder (1/4 + 1/2) / 2 = 3/8 s
    assert methods[today]["step_ms"] == 312.5 and methods[paper]["step_ms"] == 375.0
    # paired ratios per round 3/2, 1/4, 2, 3/2: median 3/2
    assert methods[today]["ratio_to_paper_decoder"] == 1.5
    assert methods[paper]["ratio_to_paper_decoder"] == 1.0
    assert (methods[today]["first_step_s"], methods[paper]["first_step_s"]) == (5.0, 3.0)
    config = make_config("cpu-objects")
    frames = config.batch_size * config.seq_len
    assert methods[today]["frames_per_s"] == pytest.approx(frames / (5 / 16), rel=1e-12)
    assert methods[today]["steps_per_s"] == pytest.approx(16 / 5, rel=1e-12)
    assert methods[today]["run_steps"] == config.steps
    assert methods[today]["run_minutes"] == pytest.approx(config.steps * 5 / 16 / 60, rel=1e-12)
    table = (tmp_path / "recipe-step-cpu.md").read_text()
    assert "| today | cpu-objects | 312.5 | 3.20 | nan | 1.500 |" in table


def test_recipe_run_launches_the_package_of_its_own_tree(tmp_path):
    """Each version's ``dvip`` runs from its own copy: the launcher checks that the package it
    imported is the tree's, and refuses one imported from anywhere else."""
    from benchmarks import recipe_run

    tree = recipe_run.version_tree(None, tmp_path)
    assert (tree / "pyro_dvip" / "glimpse.py").read_text() == (
        ROOT / "pyro_dvip" / "glimpse.py"
    ).read_text()
    env = {**os.environ, "PYTHONPATH": str(tree)}

    def launch(prefix):
        return subprocess.run([sys.executable, "-c", recipe_run.LAUNCH, prefix, "train", "--help"],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    ok = launch(str(tree))
    assert ok.returncode == 0, ok.stderr
    assert "--preset" in ok.stdout
    elsewhere = launch(str(tmp_path / "another"))
    assert elsewhere.returncode != 0 and "AssertionError" in elsewhere.stderr


def test_recipe_run_reports_medians_paired_ratios_and_the_time_beside_the_step(
    tmp_path, monkeypatch
):
    """Whole runs and steps chosen by the test: the loop's ms a step is its seconds over the
    steps, less the guarded step's median is what the loop does beside the step, and each
    ratio is the median of the paired rounds'."""
    from benchmarks import recipe_run

    runs = {  # (wall s, loop s) of each version's whole runs, in the order they run
        "41bb5c4": [(30.0, 20.0), (34.0, 24.0)],
        None: [(20.0, 10.0), (26.0, 18.0)],
    }
    monkeypatch.setattr(recipe_run, "version_tree", lambda commit, root: commit)
    monkeypatch.setattr(recipe_run, "import_baseline", lambda commit, root: None)

    def whole_run(tree, preset, steps, seed, out, threads):
        wall, loop = runs[tree].pop(0)
        return {"wall_s": wall, "loop_s": loop}

    monkeypatch.setattr(recipe_run, "whole_run", whole_run)
    monkeypatch.setattr(recipe_run, "Stepper", lambda *a, **k: object())
    steps = {"baseline": [0.2, 0.1, 0.3], "today": [0.05, 0.1, 0.15]}
    monkeypatch.setattr(recipe_run, "interleaved_times", lambda *a: (steps, {}))
    monkeypatch.setattr(sys, "argv", [
        "recipe_run", "--preset", "cpu-objects", "--steps", "100", "--repeats", "2",
        "--out", str(tmp_path),
    ])  # fmt: skip
    recipe_run.main()

    result = json.loads((tmp_path / "recipe-run-cpu-objects.json").read_text())["versions"]
    base, today = result["baseline"], result["today"]
    assert base["wall_s"] == 32.0 and today["wall_s"] == 23.0
    assert base["loop_ms_per_step"] == 220.0 and today["loop_ms_per_step"] == 140.0
    assert base["guarded_step_ms"] == pytest.approx(200.0)
    assert today["guarded_step_ms"] == pytest.approx(100.0)
    assert base["beside_step_ms"] == pytest.approx(20.0)
    assert today["beside_step_ms"] == pytest.approx(40.0)
    assert base["outside_loop_s"] == 10.0 and today["outside_loop_s"] == 9.0
    ratios = result["ratios"]
    assert ratios["wall_s"] == pytest.approx((20 / 30 + 26 / 34) / 2)
    assert ratios["loop_s"] == pytest.approx((10 / 20 + 18 / 24) / 2)
    assert ratios["guarded_step_ms"] == pytest.approx(0.5)  # rounds 1/4, 1, 1/2
    table = (tmp_path / "recipe-run-cpu-objects.md").read_text()
    assert "| today (working tree) | 23.0 | 9.0 | 140.0 | 100.0 | +40.0 |" in table
