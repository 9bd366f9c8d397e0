"""The prepared benchmark scripts run end to end at toy sizes and write the tables they
promise (their numbers are measured by running them, never in tests)."""

import json
import subprocess
import sys
from pathlib import Path

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


def test_gpu_check_without_a_gpu_says_so_in_one_line():
    result = run_module("benchmarks.gpu_check", "--device", "cuda")
    if result.returncode == 0:  # a machine with a GPU: nothing to check here
        return
    assert "gpu_check: no CUDA device here" in result.stderr
    assert "Traceback" not in result.stderr


def test_recipe_step_times_today_against_the_paper_decoder(tmp_path):
    result = run_module("benchmarks.recipe_step", "--methods", "today", "paper-decoder",
                        "--repeats", "2", "--warmup", "1", "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    methods = json.loads((tmp_path / "recipe-step-cpu.json").read_text())["methods"]
    assert methods["paper-decoder"]["ratio_to_paper_decoder"] == 1.0
    today = methods["today"]
    steps = make_config("cpu-objects").steps
    assert today["run_steps"] == steps and today["step_ms"] > 0
    assert abs(today["run_minutes"] - steps * today["step_ms"] / 6e4) < 1e-9
