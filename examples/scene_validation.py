"""Does the label-free verdict agree with the ground-truth one?

    python examples/scene_validation.py runs/*/ --out scene-validation.csv

For every evaluated run with ground truth (Moving MNIST or the disc scene: ``dvip evaluate``
first), the label-free verdict (``pyro_dvip.evaluation.scene``: no label read) beside the
ground-truth verdict of the probes (``pyro_dvip.evaluation.verdict``, recounted from the run's
alignment record with today's rules), and a second reference from the tracking scores: objects
where the factors' tracks reach IDF1 >= 0.95 with at most 2 identity switches per 100
object-frames (the tracking targets of docs/results.md), which asks for identity within a
sequence only, as the label-free verdict does (the probes ask for it across sequences). A run
evaluated before the label-free verdict had today's record gets it computed here as ``dvip
evaluate`` does (the same held-out sequences, seed and batch size, the KL per factor of its
evaluation); a stored record is judged again by today's rules. ``stored_scene_verdict`` is what
its own evaluation said.
Writes one CSV row per run and prints how often the label-free verdict agrees with each
reference on the question a user asks, "are the factors objects?" (objects or not), and every
run on which it disagrees with the probes.
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
from pyro_dvip.evaluation.scene import factor_scene, meeting_verdict, scene_verdict
from pyro_dvip.evaluation.verdict import alignment_verdict

IDF1, SWITCHES = 0.95, 2.0  # tracking targets: objects by identity within a sequence

COLUMNS = [
    "run", "data", "decoder", "factors", "digits", "channels", "seed", "verdict",
    "scene_verdict", "agree", "idf1", "id_switches_per_100", "tracking_objects",
    "agree_tracking", "used", "unexplained", "undrawn", "meetings", "passed", "scene_reason",
    "reason", "stored_scene_verdict",
]  # fmt: skip


def scene_of(run: Path, metrics: dict) -> dict:
    """The trained model's label-free record: from its evaluation where that has today's
    record, else computed as ``dvip evaluate`` computes it."""
    stored = metrics["trained"].get("scene", {})
    if "undrawn" in stored:
        return {**stored, **scene_verdict(stored)}  # judged by today's rules
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
    tracking = metrics["trained"].get("tracking", {})
    by_tracks = None
    if "idf1" in tracking:
        by_tracks = tracking["idf1"] >= IDF1 and tracking["id_switches_per_100"] <= SWITCHES
    return {
        "run": str(run), "data": config.get("scene", "mnist"),
        "decoder": config.get("decoder", "paper"), "factors": config["factors"],
        "digits": config["num_digits"], "channels": config["channels"], "seed": config["seed"],
        "verdict": truth["verdict"], "scene_verdict": label_free,
        "agree": (truth["verdict"] == "objects") == (label_free == "objects"),
        "idf1": round(tracking["idf1"], 3) if by_tracks is not None else None,
        "id_switches_per_100": (
            round(tracking["id_switches_per_100"], 2) if by_tracks is not None else None
        ),
        "tracking_objects": by_tracks,
        "agree_tracking": None if by_tracks is None else by_tracks == (label_free == "objects"),
        "used": " ".join(map(str, scene.get("used", []))),
        "unexplained": round(scene["unexplained"], 3),
        "undrawn": round(scene["undrawn"], 3) if "undrawn" in scene else None,
        "meetings": sum(p["meetings"] for p in pairs), "passed": sum(p["passed"] for p in pairs),
        "scene_reason": scene.get("reason", scene.get("tracks")), "reason": truth["reason"],
        "stored_scene_verdict": metrics["trained"].get("scene", {}).get("verdict"),
    }  # fmt: skip


def recount(row: dict) -> dict:
    """A row of an earlier table judged again by the meeting rules of today (``slots``, then
    ``swaps``), from its own counts. The rules before them read what the row's verdict read,
    so only a verdict past them (``objects``, ``swaps``) can change."""
    verdict, met, passed = row["scene_verdict"], int(row["meetings"]), int(row["passed"])
    if verdict in ("objects", "swaps"):
        verdict = meeting_verdict(met, passed) or "objects"
    reason = row["scene_reason"]
    if verdict != row["scene_verdict"]:
        reason = f"recounted: {passed} of {met} meetings passed"
    objects = verdict == "objects"
    tracking = None if row["tracking_objects"] == "" else row["tracking_objects"] == "True"
    return {
        **row, "scene_verdict": verdict, "scene_reason": reason,
        "agree": (row["verdict"] == "objects") == objects,
        "agree_tracking": None if tracking is None else tracking == objects,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="Run directories, evaluated.")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write.")
    parser.add_argument(
        "--recount", type=Path, action="append", default=[], metavar="CSV",
        help="Also take the rows of an earlier table, judged again by today's meeting rules "
        "(their runs need not be on this machine).",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.runs and not args.recount:
        parser.error("give run directories or --recount CSV")
    rows = [recount(row) for path in args.recount for row in csv.DictReader(path.open())]
    rows += [row for run in args.runs if (row := row_of(run)) is not None]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    judged = [r for r in rows if r["scene_verdict"] != "n/a"]
    agree = sum(r["agree"] for r in judged)
    print(f"label-free and the probes' verdict agree (objects or not) on {agree} of "
          f"{len(judged)} runs")  # fmt: skip
    tracked = [r for r in judged if r["agree_tracking"] is not None]
    print(
        f"label-free and the tracking targets agree on "
        f"{sum(r['agree_tracking'] for r in tracked)} of {len(tracked)} runs"
    )
    for r in judged:
        if not r["agree"]:
            print(f"  {r['run']}: ground truth {r['verdict']}, label-free {r['scene_verdict']} "
                  f"({r['scene_reason']})")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
