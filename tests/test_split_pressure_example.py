import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("examples.split_pressure")


def test_circle_and_fast_digits_make_an_axis_split_cost_and_a_shuffled_partner_saves_nothing(
    example,
):
    recipe = {a: example.split_pressure(a, sequences=20_000) for a in example.ARENAS}
    paper_box = example.split_pressure("box", image_size=64, speed=3.6, sequences=20_000)
    for result in (*recipe.values(), paper_box):
        assert abs(result["shuffled_control"]) < 0.01
        for axis in "xy":
            assert result[f"nll_{axis}_both"] <= result[f"nll_{axis}_own"]
    assert recipe["circle"]["pixels_per_axis"] == 19  # 32x32 frames, a 14-pixel digit box
    # The recipe's data: 0.37 nats per digit per frame in the circle, 0.07 in the box.
    assert recipe["circle"]["object_split_saving"] > 0.3
    assert recipe["circle"]["object_split_saving"] > 3 * recipe["box"]["object_split_saving"]
    assert paper_box["object_split_saving"] < 0.02  # the paper's data: an axis split is free


def test_gaussian_nll_uses_each_cells_own_variance(example):
    target = np.array([0.0, 2.0, 10.0, 10.0])
    cell = np.array([0, 0, 1, 1])  # variances 2 and 0 (floored at 1e-6)
    expected = 0.5 * (0.5 * np.log(2 * np.pi * np.e * 2.0) + 0.5 * np.log(2 * np.pi * np.e * 1e-6))
    assert example.gaussian_nll(target, cell) == pytest.approx(expected)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seq-len", "1"], "--seq-len must be at least 2"),
        (["--sequences", "0"], "--sequences must be at least 2"),
        (["--speed", "-1"], "speed must be non-negative"),
    ],
)
def test_bad_options_get_a_one_line_error_naming_them(args, message):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "split_pressure.py"), *args],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
