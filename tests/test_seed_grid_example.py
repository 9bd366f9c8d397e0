"""examples/seed_grid.py: trains every (variant, seed), stops at --until and resumes, evaluates,
and tabulates one row per run with the verdict counted per variant."""

import csv
import json
import subprocess
import sys
from pathlib import Path

from conftest import tiny_args

from pyro_dvip.evaluation.verdict import alignment_verdict

ROOT = Path(__file__).resolve().parents[1]
FAST_EVAL = (
    "--samples 40 --particles 2 --iw-samples 2 --bootstrap 5 --partitions 3 --select-pairs 20 "
    "--intervention-pairs 8 --rollouts 2 --examples 2"
)


def grid(out, *args):
    command = [sys.executable, str(ROOT / "examples" / "seed_grid.py"), "--out", str(out)]
    return subprocess.run(command + list(args), capture_output=True, text=True, cwd=ROOT)


def test_grid_stops_resumes_evaluates_and_counts_verdicts(tmp_path):
    base = " ".join(tiny_args(steps=4, checkpoint_every=2))
    variants = ["--variant", f"a={base}", "--variant", f"b={base} --factor-dim 2"]
    part = grid(tmp_path, "--seeds", "3", *variants, "--until", "2", "--no-evaluate")
    assert part.returncode == 0, part.stderr
    with open(tmp_path / "grid.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["seed"], r["step"]) for r in rows] == [
        ("a", "3", "2"),
        ("b", "3", "2"),
    ]
    assert {r["verdict"] for r in rows} == {"not evaluated"}
    assert json.loads((tmp_path / "b-s3" / "config.json").read_text())["factor_dim"] == 2

    done = grid(
        tmp_path, "--seeds", "3", *variants, "--eval-args", FAST_EVAL, "--second-probe", "mlp"
    )
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "grid.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["4"] * 2  # resumed from 2 to the full 4 steps
    for r in rows:
        metrics = json.loads((Path(r["run"]) / "eval" / "metrics.json").read_text())
        a = metrics["trained"]["alignment"]
        assert float(r["max_leakage"]) == round(a["max_leakage"], 3)
        assert float(r["object_score"]) == metrics["trained"]["object_score"]["normalised"]
        assert r["verdict"] in {"objects", "axis split", "dropped", "under-encoded", "mixed"}
        identity = metrics["trained"]["identity"]
        assert int(r["crossings"]) == identity["crossings"]
        assert float(r["swaps_per_crossing"]) == round(identity["swaps_per_crossing"], 3)
        floor = metrics["untrained"]["identity"]["swaps_per_crossing"]
        assert float(r["swaps_per_crossing_untrained"]) == round(floor, 3)
        kl = a["kl_per_factor_per_frame"]
        assert json.loads(r["kl_per_factor"]) == [round(v, 3) for v in kl]
        # unused: under 0.1 nats per frame, whatever the factor's probes read
        unused = [k for k in range(len(kl)) if kl[k] is not None and kl[k] < 0.1]
        assert r["unused_factors"] == " ".join(map(str, unused))
        # the row keeps what its verdict is read from: a later rule can recount it
        assert alignment_verdict(json.loads(r["verdict_record"]))["verdict"] == r["verdict"]
        # the second opinion: its own evaluation, with the MLP probe
        second = json.loads((Path(r["run"]) / "eval-mlp" / "metrics.json").read_text())
        b = second["trained"]["alignment"]
        assert b["probe"] == "mlp" and r["second_probe"] == "mlp"
        assert r["second_verdict"] == b["verdict"]
        assert alignment_verdict(json.loads(r["second_verdict_record"]))["verdict"] == b["verdict"]
        assert float(r["second_max_leakage"]) == round(b["max_leakage"], 3)
        seconds = [row["seconds"] for row in csv.DictReader(open(Path(r["run"]) / "metrics.csv"))]
        assert float(r["train_minutes"]) == round(float(seconds[-1]) / 60, 1)
    table = (tmp_path / "grid.md").read_text().splitlines()
    for name in ("a", "b"):
        objects = sum(r["verdict"] == "objects" for r in rows if r["variant"] == name)
        line = next(row for row in table if row.startswith(f"| {name} |"))
        assert line.split(" | ")[1] == f"{objects} of 1"
        second = sum(r["second_verdict"] == "objects" for r in rows if r["variant"] == name)
        assert line.split(" | ")[-1] == f"{second} of 1 |"

    # another seed of one variant, into the same folder: its row joins the table
    more = grid(tmp_path, "--seeds", "4", "--variant", f"a={base}", "--until", "2",
                "--no-evaluate")  # fmt: skip
    assert more.returncode == 0, more.stderr
    with open(tmp_path / "grid.csv", newline="") as f:
        after = list(csv.DictReader(f))
    assert after[:2] == rows  # the earlier call's rows, unchanged
    assert [(r["variant"], r["seed"], r["step"], r["verdict"]) for r in after[2:]] == [
        ("a", "4", "2", "not evaluated")
    ]
    table = (tmp_path / "grid.md").read_text()
    assert "s3 " in table and "s4 not evaluated" in table and "| b |" in table


def test_bad_variant_is_a_one_line_error(tmp_path):
    result = grid(tmp_path, "--seeds", "0", "--variant", "no-equals-sign")
    assert result.returncode == 2
    assert "--variant: expected NAME=ARGS, got 'no-equals-sign'" in result.stderr
