"""Train variants of a recipe over seeds, two runs at a time, evaluate them and tabulate the
verdict of each seed: the experiment loop of docs/experiments.md as one resumable command.

    python examples/seed_grid.py --out runs/grid --seeds 0 1 2 \\
        --variant paper= --variant additive="--decoder additive"
    python examples/seed_grid.py --out runs/grid --seeds 0 1 2 --until 4000 ...  # part-way

Each (variant, seed) trains ``dvip train --preset PRESET --seed SEED VARIANT_ARGS`` into
``OUT/VARIANT-sSEED`` (resumed if it exists; ``--until`` stops it part-way, exactly resumable),
``--jobs`` at a time with one torch thread each; then every run whose newest checkpoint is
newer than its evaluation is evaluated (``dvip evaluate`` defaults plus ``--eval-args``), and
with ``--second-probe mlp`` evaluated again with ``--probe mlp`` into ``RUN/eval-mlp`` (the
documented second opinion, docs/evaluation.md). Rerunning the same command continues where it
stopped. Ctrl-C reaches the trainings too, and each saves a checkpoint and stops; ``kill`` of
the grid's own process alone leaves them training to their end, and a later call evaluates
them. Writes ``OUT/grid.csv`` (one row per run; this call's rows are merged into those an
earlier call into the same OUT wrote for other variants or seeds: step, training minutes,
matched R² and leakage per digit, swap shares, per-coordinate probes, identity swaps per
crossing and the tracking scores (MOTA, IDF1, identity switches per 100 object-frames) beside
the untrained model's, a what/where model's least appearance-swap change over pairs of factors,
the unused factors and every factor's KL per frame, the label-free object score where the
evaluation has one and the factors that void it, test ELBO, the verdict of
``pyro_dvip.evaluation.verdict``, the label-free verdict of ``pyro_dvip.evaluation.scene`` (a
stored record judged again by today's rules) with its used factors and the share of what moves
that no factor draws, the second probe's figures and verdict, and for each probe the probes and
KL its verdict is read from, ``verdict_record``: a later rule recounts a row with
``alignment_verdict(json.loads(row["verdict_record"]))``) and
``OUT/grid.md`` (per variant: seeds with objects out of N, by each probe, mean ± sd of the
figures, never the best seed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyro_dvip.evaluation.scene import scene_verdict
from pyro_dvip.evaluation.verdict import alignment_verdict, unused_factors, verdict_record

COLUMNS = [
    "variant", "seed", "step", "train_minutes", "min_matched", "max_leakage", "matched",
    "leakage", "swap_shares", "by_coordinate", "swaps_per_crossing",
    "swaps_per_crossing_untrained", "crossings", "mota", "mota_untrained", "idf1",
    "idf1_untrained", "id_switches_per_100", "id_switches_per_100_untrained",
    "appearance_change", "appearance_change_untrained", "unused_factors",
    "kl_per_factor",
    "object_score", "silent_factors", "object_score_untrained", "test_elbo", "verdict", "reason",
    "scene_verdict", "scene_reason", "used_factors", "unexplained", "undrawn",
    "second_probe", "second_min_matched", "second_max_leakage", "second_swaps_per_crossing",
    "second_verdict", "verdict_record", "second_verdict_record", "run",
]  # fmt: skip
SECOND = "eval-mlp"  # where --second-probe mlp writes its evaluation


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, args = text.partition("=")
    if not sep or not name or "/" in name or " " in name:
        raise argparse.ArgumentTypeError(f"--variant: expected NAME=ARGS, got {text!r}")
    return name, shlex.split(args)


def dvip_command() -> list[str]:
    return [sys.executable, "-m", "dvip_cli"]


def run_logged(command: list[str], log: Path) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "a") as f:
        f.write("$ " + shlex.join(command) + "\n")
        f.flush()
        return subprocess.call(command, stdout=f, stderr=subprocess.STDOUT, env=env)


def train(run: Path, seed: int, args: list[str], opts) -> int:
    command = dvip_command() + ["train", "--preset", opts.preset, "--seed", str(seed), "--quiet"]
    if (run / "config.json").exists():
        command.append("--resume")
    if opts.until is not None:
        command += ["--until", str(opts.until)]
    return run_logged(command + args + ["--out", str(run)], run.with_suffix(".train.log"))


def newest_checkpoint_time(run: Path) -> float:
    times = [p.stat().st_mtime for p in (run / "checkpoints").glob("step_*.pt")]
    return max(times, default=0.0)


def evaluate(run: Path, opts) -> int:
    """Evaluate ``run`` where its evaluations are older than its newest checkpoint: the
    headline probe into RUN/eval, then the second probe (if any) into RUN/eval-mlp."""
    evaluations = [("eval", [], ".eval.log")]
    if opts.second_probe:
        extra = ["--probe", opts.second_probe, "--out", str(run / SECOND)]
        evaluations.append((SECOND, extra, f".{SECOND}.log"))
    for folder, extra, suffix in evaluations:
        metrics = run / folder / "metrics.json"
        if metrics.exists() and metrics.stat().st_mtime >= newest_checkpoint_time(run):
            continue
        command = dvip_command() + ["evaluate", str(run)] + shlex.split(opts.eval_args) + extra
        code = run_logged(command, run.with_suffix(suffix))
        if code:
            return code
    return 0


def last_logged(run: Path) -> dict:
    path = run / "metrics.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows[-1] if rows else {}


def object_score(model: dict) -> tuple[float | None, str]:
    """The normalised object score and its silent factors (which void it), if measured."""
    score = model.get("object_score") or {}
    silent = score.get("silent_factors") or []
    return score.get("normalised"), " ".join(map(str, silent))


def row_of(variant: str, seed: int, run: Path) -> dict:
    logged = last_logged(run)
    row = {"variant": variant, "seed": seed, "run": str(run), "step": logged.get("step", "")}
    if logged.get("seconds"):
        row["train_minutes"] = round(float(logged["seconds"]) / 60, 1)
    path = run / "eval" / "metrics.json"
    if not path.exists():
        return {**row, "verdict": "not evaluated"}
    metrics = json.loads(path.read_text())
    trained, untrained = metrics["trained"], metrics.get("untrained", {})
    a = trained["alignment"]
    row.update(alignment_verdict(a))
    row["verdict_record"] = json.dumps(verdict_record(a))  # recounts it if the rules change
    if a.get("applicable", True):
        row.update(
            min_matched=round(a["min_matched"], 3),
            max_leakage=round(a["max_leakage"], 3),
            matched=json.dumps([round(v, 2) for v in a["matched"]]),
            leakage=json.dumps([round(v, 2) for v in a["leakage"]]),
        )
        coords = a.get("by_coordinate")
        if coords is not None:  # each factor's R² on (x, y) of each digit
            row["by_coordinate"] = json.dumps(
                [[[round(v, 2) for v in digit[:2]] for digit in factor] for factor in coords["r2"]]
            )
    swap = trained.get("intervention", {})
    if "matched_share" in swap:
        row["swap_shares"] = json.dumps([round(v, 2) for v in swap["matched_share"]])
    row.update(identity(trained), swaps_per_crossing_untrained=identity(untrained).get(
        "swaps_per_crossing"))  # fmt: skip
    row.update(tracking(trained))
    row.update({f"{k}_untrained": v for k, v in tracking(untrained).items()})
    for name, model in (("appearance_change", trained), ("appearance_change_untrained",
                                                          untrained)):  # fmt: skip
        swap_a = model.get("appearance_swap") or {}
        if "min_change" in swap_a:  # a what/where model: least change over pairs of factors
            row[name] = round(swap_a["min_change"], 3)
    kl = a.get("kl_per_factor_per_frame")
    if kl is not None:  # the verdict's unused factors, and every factor's KL they are read from
        row["kl_per_factor"] = json.dumps([None if v is None else round(v, 3) for v in kl])
        row["unused_factors"] = " ".join(map(str, unused_factors(a)))
    row["object_score"], row["silent_factors"] = object_score(trained)
    row["object_score_untrained"] = object_score(untrained)[0]
    row["test_elbo"] = trained.get("bound", {}).get("elbo_per_frame")
    scene = trained.get("scene") or {}
    if "used" in scene:  # the label-free record: no ground truth read
        row["used_factors"] = " ".join(map(str, scene["used"]))
        row["unexplained"] = round(scene["unexplained"], 3)
        row["undrawn"] = round(scene["undrawn"], 3) if "undrawn" in scene else ""
        if "undrawn" in scene:  # today's record: judged again by today's rules
            scene = {**scene, **scene_verdict(scene)}
        row["scene_verdict"] = scene.get("verdict", "n/a")
        row["scene_reason"] = scene.get("reason", scene.get("tracks"))
    second = run / SECOND / "metrics.json"
    if second.exists():
        other = json.loads(second.read_text())["trained"]
        b = other["alignment"]
        row["second_probe"] = b.get("probe", "mlp")
        row["second_verdict"] = alignment_verdict(b)["verdict"]
        row["second_verdict_record"] = json.dumps(verdict_record(b))
        row["second_swaps_per_crossing"] = identity(other).get("swaps_per_crossing")
        if b.get("applicable", True):
            row["second_min_matched"] = round(b["min_matched"], 3)
            row["second_max_leakage"] = round(b["max_leakage"], 3)
    return row


def identity(model: dict) -> dict:
    """Identity swaps per crossing and the crossings they are counted over, if measured."""
    record = model.get("identity") or {}
    if "swaps_per_crossing" not in record:  # absent from older metrics and without ground truth
        return {}
    rate = record["swaps_per_crossing"]
    return {
        "swaps_per_crossing": None if rate is None else round(rate, 3),
        "crossings": record.get("crossings"),
    }


def tracking(model: dict) -> dict:
    """MOTA, IDF1 and identity switches per 100 object-frames of the factors' tracks, if
    measured."""
    record = model.get("tracking") or {}
    if "mota" not in record:  # absent from older metrics and without ground truth
        return {}
    return {k: round(record[k], 3) for k in ("mota", "idf1", "id_switches_per_100")}


def _scene_count(rows: list[dict]) -> str:
    """How many of the rows the label-free verdict calls objects, of those it judged."""
    judged = [r for r in rows if r.get("scene_verdict") not in (None, "", "n/a")]
    if not judged:
        return "n/a"
    return f"{sum(r['scene_verdict'] == 'objects' for r in judged)} of {len(judged)}"


def mean_sd(values: list) -> str:
    values = [float(v) for v in values if v not in (None, "")]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def summary(rows: list[dict], variants: list[str]) -> str:
    lines = [
        "| variant | seeds with objects | verdicts | min matched R² | max leakage | swaps per "
        "crossing (untrained) | unused factors | object score (untrained) | train minutes | "
        "second probe: seeds with objects | label-free: seeds called objects |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in variants:
        mine = [r for r in rows if r["variant"] == name]
        judged = [r for r in mine if r["verdict"] not in ("not evaluated", "n/a")]
        words = ", ".join(f"s{r['seed']} {r['verdict']}" for r in mine)
        objects = sum(r["verdict"] == "objects" for r in judged)
        second = [r for r in judged if r.get("second_verdict") not in (None, "", "n/a")]
        second_objects = sum(r["second_verdict"] == "objects" for r in second)
        unused = [len(r["unused_factors"].split()) for r in judged if "unused_factors" in r]
        lines.append(
            f"| {name} | {objects} of {len(judged)} | {words} | "
            f"{mean_sd([r.get('min_matched') for r in judged])} | "
            f"{mean_sd([r.get('max_leakage') for r in judged])} | "
            f"{mean_sd([r.get('swaps_per_crossing') for r in judged])} "
            f"({mean_sd([r.get('swaps_per_crossing_untrained') for r in judged])}) | "
            f"{mean_sd(unused)} | "
            f"{mean_sd([r.get('object_score') for r in judged])} "
            f"({mean_sd([r.get('object_score_untrained') for r in judged])}) | "
            f"{mean_sd([r.get('train_minutes') for r in mine])} | "
            f"{f'{second_objects} of {len(second)}' if second else 'n/a'} | "
            f"{_scene_count(judged)} |"
        )
    return "\n".join(lines) + "\n"


def merged(path: Path, rows: list[dict]) -> list[dict]:
    """The rows of the grid.csv at ``path`` (if any) with this call's ``rows`` in place of
    those of the same variant and seed, then this call's other rows: a call with other seeds
    or variants adds to the table instead of replacing it."""
    if not path.exists():
        return rows
    with open(path, newline="") as f:
        earlier = list(csv.DictReader(f))
    new = {(r["variant"], str(r["seed"])): r for r in rows}
    out = [new.pop((r["variant"], r["seed"]), r) for r in earlier]
    return out + list(new.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder of the grid's runs.")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument(
        "--variant", type=parse_variant, action="append", required=True,
        help="NAME=ARGS: extra `dvip train` options of one variant (ARGS may be empty).",
    )  # fmt: skip
    parser.add_argument(
        "--preset",
        default="cpu-objects",
        help="The recipe every variant starts from (cpu-objects-paper: the paper's model). "
        "[default: cpu-objects]",
    )
    parser.add_argument("--until", type=int, help="Stop every run after this step (resumable).")
    parser.add_argument("--jobs", type=int, default=2, help="Runs at a time [default: 2].")
    parser.add_argument("--eval-args", default="", help="Extra `dvip evaluate` options.")
    parser.add_argument(
        "--second-probe",
        choices=["mlp"],
        help="Also evaluate every run with `--probe mlp` (into RUN/eval-mlp) and count its "
        "verdicts beside the headline ridge probe's. [default: off]",
    )
    parser.add_argument("--no-evaluate", action="store_true", help="Train only.")
    opts = parser.parse_args(argv)
    if opts.jobs < 1:
        parser.error("--jobs: must be >= 1")
    names = [name for name, _ in opts.variant]
    if len(set(names)) != len(names):
        parser.error(f"--variant: names must differ, got {', '.join(names)}")
    opts.out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, args, seed) for name, args in opts.variant for seed in opts.seeds]
    run_of = {(name, seed): opts.out / f"{name}-s{seed}" for name, _, seed in jobs}

    failed = []
    with ThreadPoolExecutor(opts.jobs) as pool:
        codes = pool.map(lambda j: train(run_of[j[0], j[2]], j[2], j[1], opts), jobs)
        failed += [f"train {run_of[j[0], j[2]]}" for j, c in zip(jobs, codes) if c]
        if not opts.no_evaluate:
            ready = [j for j in jobs if (run_of[j[0], j[2]] / "config.json").exists()]
            codes = pool.map(lambda j: evaluate(run_of[j[0], j[2]], opts), ready)
            failed += [f"evaluate {run_of[j[0], j[2]]}" for j, c in zip(ready, codes) if c]

    rows = merged(opts.out / "grid.csv",
                  [row_of(name, seed, run_of[name, seed]) for name, _, seed in jobs])  # fmt: skip
    with open(opts.out / "grid.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    table = summary(rows, list(dict.fromkeys(r["variant"] for r in rows)))
    (opts.out / "grid.md").write_text(table)
    print(table, end="")
    if failed:
        logs = "; ".join(failed)
        sys.exit(f"error: failed ({logs}); see the .train.log / .eval.log beside each run")


if __name__ == "__main__":
    main()
