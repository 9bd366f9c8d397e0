import csv
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("examples.object_score_validation")


def metrics(score, leakage, gap, seed=0, floor=0.95, decoder="additive", silent=()):
    alignment = {"min_matched": 0.9, "max_leakage": leakage, "mean_gap": gap, "min_gap": gap}
    trained = {"normalised": score, "silent_factors": list(silent)}
    return {
        "config": {"decoder": decoder, "entangled": False, "seed": seed},
        "trained": {"object_score": trained, "alignment": alignment},
        "untrained": {"object_score": {"normalised": floor}, "alignment": alignment},
    }


def test_rank_correlations_against_hand_computed_spearman(example):
    scores, leakage = [0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.2, 0.4]  # one swap: rho = 0.8
    records = [example.record(f"r{i}", metrics(s, v, -v)) for i, (s, v) in
               enumerate(zip(scores, leakage))]  # fmt: skip
    out = example.rank_correlations(records)
    assert out["max_leakage"]["rho"] == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert out["min_gap"]["rho"] == pytest.approx(-0.8) and out["min_gap"]["runs"] == 4
    video = example.record("video", metrics(0.5, None, None))
    assert example.rank_correlations(records[:2] + [video])["max_leakage"]["rho"] is None
    # a silent factor voids the score: a run that would break the ranking is left out
    silent = example.record("silent", metrics(0.0, 0.9, -0.9, silent=[1]))
    assert example.rank_correlations(records + [silent])["max_leakage"] == out["max_leakage"]
    old = metrics(0.0, 0.9, -0.9)  # evaluated before the silent-factor check existed
    del old["trained"]["object_score"]["silent_factors"]
    old = example.record("old", old)
    assert old["silent_factors"] == "unknown"
    assert example.rank_correlations(records + [old])["max_leakage"] == out["max_leakage"]


def test_correlations_are_also_given_within_each_decoder(example):
    # across decoders the score ranks perfectly; within the paper decoder's runs it is reversed
    cases = [(0.01, 0.05, "additive"), (0.02, 0.1, "additive"), (0.03, 0.2, "additive"),
             (0.5, 0.6, "paper"), (0.6, 0.5, "paper"), (0.7, 0.4, "paper")]  # fmt: skip
    records = [example.record(f"r{i}", metrics(s, v, -v, decoder=d))
               for i, (s, v, d) in enumerate(cases)]  # fmt: skip
    out = example.correlations_by_decoder(records)
    assert out["additive"]["max_leakage"]["rho"] == pytest.approx(1.0)
    assert out["paper"]["max_leakage"]["rho"] == pytest.approx(-1.0)
    assert out["all"]["max_leakage"]["rho"] == pytest.approx(1 - 6 * 8 / (6 * 35))


def test_script_writes_one_row_per_run_and_the_correlations(tmp_path):
    runs = []
    for i, (score, leakage) in enumerate([(0.2, 0.05), (0.6, 0.5), (0.4, 0.3)]):
        run = tmp_path / f"s{i}"
        (run / "eval").mkdir(parents=True)
        (run / "eval" / "metrics.json").write_text(json.dumps(metrics(score, leakage, -leakage, i)))
        runs.append(run)
    out = tmp_path / "v.csv"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "object_score_validation.py"), *map(str, runs),
         tmp_path / "missing", "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "object score vs max_leakage, over 3 runs (all): 1.00" in result.stdout
    assert f"skipped {tmp_path / 'missing'}" in result.stdout
    rows = list(csv.reader(out.open()))
    assert rows[0][:5] == ["run", "decoder", "entangled", "seed", "object_score"]
    assert [r[4] for r in rows[1:4]] == ["0.2", "0.6", "0.4"]
    assert rows[5:] == [
        ["spearman_object_score_vs", "rho", "p", "runs", "decoders"],
        ["max_leakage", "1.0", "0.0", "3", "all"],
        ["min_gap", "-1.0", "0.0", "3", "all"],
        ["max_leakage", "1.0", "0.0", "3", "additive"],
        ["min_gap", "-1.0", "0.0", "3", "additive"],
    ]
