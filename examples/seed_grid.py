"""Train variants of a recipe over seeds, two runs at a time, evaluate them and tabulate the
verdict of each seed: the experiment loop of docs/experiments.md as one resumable command.

    python examples/seed_grid.py --out runs/grid --seeds 0 1 2 \\
        --variant paper= --variant additive="--decoder additive"
    python examples/seed_grid.py --out runs/grid --seeds 0 1 2 --until 4000 ...  # part-way

Each (variant, seed) trains ``dvip train --preset PRESET --seed SEED VARIANT_ARGS`` into
``OUT/VARIANT-sSEED`` (resumed if it exists; ``--until`` stops it part-way, exactly resumable),
``--jobs`` at a time with one torch thread each; then every run whose newest checkpoint is
newer than its evaluation is evaluated (``dvip evaluate`` defaults plus ``--eval-args``).
Rerunning the same command continues where it stopped. Writes ``OUT/grid.csv`` (one row per
run: step, training minutes, matched R² and leakage per digit, swap shares, per-coordinate
probes, the label-free object score where the evaluation has one and the factors that void it,
test ELBO, and the verdict of
``pyro_dvip.evaluation.verdict``) and ``OUT/grid.md`` (per variant: seeds with objects out of
N, mean ± sd of the figures, never the best seed).
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

from pyro_dvip.evaluation.verdict import alignment_verdict

COLUMNS = [
    "variant", "seed", "step", "train_minutes", "min_matched", "max_leakage", "matched",
    "leakage", "swap_shares", "by_coordinate", "object_score", "silent_factors",
    "object_score_untrained",
    "test_elbo", "verdict", "reason", "run",
]  # fmt: skip


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
    metrics = run / "eval" / "metrics.json"
    if metrics.exists() and metrics.stat().st_mtime >= newest_checkpoint_time(run):
        return 0
    command = dvip_command() + ["evaluate", str(run)] + shlex.split(opts.eval_args)
    return run_logged(command, run.with_suffix(".eval.log"))


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
    row["object_score"], row["silent_factors"] = object_score(trained)
    row["object_score_untrained"] = object_score(untrained)[0]
    row["test_elbo"] = trained.get("bound", {}).get("elbo_per_frame")
    return row


def mean_sd(values: list) -> str:
    values = [float(v) for v in values if v not in (None, "")]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def summary(rows: list[dict], variants: list[str]) -> str:
    lines = [
        "| variant | seeds with objects | verdicts | min matched R² | max leakage | object score "
        "(untrained) | train minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in variants:
        mine = [r for r in rows if r["variant"] == name]
        judged = [r for r in mine if r["verdict"] not in ("not evaluated", "n/a")]
        words = ", ".join(f"s{r['seed']} {r['verdict']}" for r in mine)
        objects = sum(r["verdict"] == "objects" for r in judged)
        lines.append(
            f"| {name} | {objects} of {len(judged)} | {words} | "
            f"{mean_sd([r.get('min_matched') for r in judged])} | "
            f"{mean_sd([r.get('max_leakage') for r in judged])} | "
            f"{mean_sd([r.get('object_score') for r in judged])} "
            f"({mean_sd([r.get('object_score_untrained') for r in judged])}) | "
            f"{mean_sd([r.get('train_minutes') for r in mine])} |"
        )
    return "\n".join(lines) + "\n"


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

    rows = [row_of(name, seed, run_of[name, seed]) for name, _, seed in jobs]
    with open(opts.out / "grid.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    table = summary(rows, names)
    (opts.out / "grid.md").write_text(table)
    print(table, end="")
    if failed:
        logs = "; ".join(failed)
        sys.exit(f"error: failed ({logs}); see the .train.log / .eval.log beside each run")


if __name__ == "__main__":
    main()
