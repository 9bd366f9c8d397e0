"""Does the label-free verdict agree with the ground-truth one?

    python examples/scene_validation.py runs/*/ --out scene-validation.csv

For every evaluated run with ground truth (Moving MNIST or the disc scene: ``dvip evaluate``
first), the label-free verdict (``pyro_dvip.evaluation.scene``: no label read) beside the
ground-truth verdict of the probes (``pyro_dvip.evaluation.verdict``, recounted from the run's
alignment record with today's rules). A run evaluated before the label-free verdict existed
gets it computed here exactly as ``dvip evaluate`` does (the same held-out sequences, seed
and batch size, the KL per factor of its evaluation). Writes one CSV row per run and prints
how often the two agree on the question a user asks, "are the factors objects?" (objects or
not), and every run on which they disagree.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from pyro_dvip.build import load
from pyro_dvip.config import TrainConfig
from pyro_dvip.evaluation.held_out import held_out_data
from pyro_dvip.evaluation.options import EvalOptions
from pyro_dvip.evaluation.posterior import filter_sequences
from pyro_dvip.evaluation.scene import factor_scene
from pyro_dvip.evaluation.verdict import alignment_verdict

COLUMNS = [
    "run", "data", "decoder", "factors", "digits", "seed", "verdict", "scene_verdict", "agree",
    "used", "unexplained", "meetings", "passed", "scene_reason", "reason",
]  # fmt: skip


def scene_of(run: Path, metrics: dict) -> dict:
    """The trained model's label-free record: from its evaluation, else computed as
    ``dvip evaluate`` computes it."""
    if "scene" in metrics["trained"]:
        return metrics["trained"]["scene"]
    config = TrainConfig.load(run / "config.json")
    opts = EvalOptions(**{k: v for k, v in metrics["options"].items() if k != "device"})
    data, _, measured = held_out_data(run, config, opts)
    dvip = load(run, checkpoint=None if metrics["checkpoint"] == "newest" else
                metrics["checkpoint"]).eval()  # fmt: skip
    torch.manual_seed(measured.seed)
    posterior = filter_sequences(dvip, data.frames, measured.batch_size)
    kl = metrics["trained"]["bound"].get("kl_per_factor_per_frame")
    return factor_scene(dvip, data.frames, posterior, kl, measured.batch_size)[0]


def row_of(run: Path) -> dict | None:
    """One CSV row, or None for a run without ground truth or without an evaluation."""
    path = run / "eval" / "metrics.json"
    if not path.exists():
        print(f"{run}: not evaluated (dvip evaluate {run})")
        return None
    metrics = json.loads(path.read_text())
    alignment = metrics["trained"]["alignment"]
    if not alignment.get("applicable", True):
        print(f"{run}: no ground truth ({alignment['note']})")
        return None
    truth = alignment_verdict(alignment)
    scene = scene_of(run, metrics)
    config = metrics["config"]
    label_free = scene.get("verdict", "n/a")
    pairs = scene.get("pairs", [])
    return {
        "run": str(run), "data": config.get("scene", "mnist"),
        "decoder": config.get("decoder", "paper"), "factors": config["factors"],
        "digits": config["num_digits"], "seed": config["seed"], "verdict": truth["verdict"],
        "scene_verdict": label_free,
        "agree": (truth["verdict"] == "objects") == (label_free == "objects"),
        "used": " ".join(map(str, scene.get("used", []))),
        "unexplained": round(scene["unexplained"], 3),
        "meetings": sum(p["meetings"] for p in pairs), "passed": sum(p["passed"] for p in pairs),
        "scene_reason": scene.get("reason", scene.get("tracks")), "reason": truth["reason"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="Run directories, evaluated.")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write.")
    args = parser.parse_args(argv)
    rows = [row for run in args.runs if (row := row_of(run)) is not None]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    judged = [r for r in rows if r["scene_verdict"] != "n/a"]
    agree = sum(r["agree"] for r in judged)
    print(f"label-free and ground truth agree (objects or not) on {agree} of {len(judged)} runs")
    for r in judged:
        if not r["agree"]:
            print(f"  {r['run']}: ground truth {r['verdict']}, label-free {r['scene_verdict']} "
                  f"({r['scene_reason']})")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
