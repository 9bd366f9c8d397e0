"""What a seed costs a user: each version's own ``dvip train``, whole runs, against the
guarded step that ``benchmarks/recipe_step.py`` times, in one run.

    python -m benchmarks.recipe_run                          # cpu-objects, 41bb5c4 and today
    python -m benchmarks.recipe_run --preset cpu-sprites --steps 800 --repeats 2
    python -m benchmarks.recipe_run --full --repeats 1       # the preset's own steps: a seed

Each version is its own package and command line: ``--baseline``'s ``pyro_dvip`` and ``cli``
(``git archive``), and today's working tree, each copied into a folder of its own that
``PYTHONPATH`` puts first (the run checks which package it imported). Per round, in
alternating order, each version trains ``dvip train --preset PRESET --steps N --seed S``
with one torch thread (``OMP_NUM_THREADS``), as a user runs it; the guarded step of
``recipe_step`` (the same model built by today's configuration, on fixed frames) is then
timed in the same process for both versions, interleaved. Reported per version:

- ``wall s``: the whole process (start-up, data, the loop, the last test ELBO and checkpoint);
- ``loop ms a step``: the loop's own clock (``seconds`` in metrics.csv: steps, data,
  logging, without test ELBOs) over the steps;
- ``guarded step ms``: ``recipe_step``'s figure; ``beside the step``: the loop's ms less it;
- the ratio of today to the baseline for each (median of the rounds' ratios).

A run of the preset's own steps (``--full``) is a seed's cost; for a preset with a curriculum
(``cpu-sprites``: its first 500 steps on 2 frames) the loop's ms a step is an average over
both lengths, and the guarded step is timed at the full length. Writes
``benchmarks/results/recipe-run-<preset>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.step_speed import Stepper, import_baseline, interleaved_times, write_results
from pyro_dvip.config import make_config

BASELINE = "41bb5c4"
ROOT = Path(__file__).resolve().parent.parent
# Runs the command line of the package in the working directory's PYTHONPATH entry, after
# checking that this is the package it imported (not an installed one).
LAUNCH = (
    "import sys, pyro_dvip, dvip_cli.main as m; "
    "assert pyro_dvip.__file__.startswith(sys.argv[1]), pyro_dvip.__file__; "
    "sys.argv = ['dvip'] + sys.argv[2:]; m.main()"
)


def version_tree(commit: str | None, root: Path) -> Path:
    """A folder holding ``pyro_dvip`` and ``dvip_cli`` as of ``commit`` (None: the working
    tree), for ``PYTHONPATH``."""
    tree = root / (commit or "today")
    tree.mkdir(parents=True)
    if commit is None:
        shutil.copytree(ROOT / "pyro_dvip", tree / "pyro_dvip")
        shutil.copytree(ROOT / "cli", tree / "dvip_cli")
    else:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "pyro_dvip", "cli"],
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        (tree / "cli").rename(tree / "dvip_cli")
    return tree


def whole_run(tree: Path, preset: str, steps: int, seed: int, out: Path, threads: int) -> dict:
    """One ``dvip train`` of ``tree``'s version: its wall seconds and the loop's own seconds."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))  # fmt: skip
    command = [sys.executable, "-c", LAUNCH, str(tree), "train", "--preset", preset, "--steps",
               str(steps), "--seed", str(seed), "--out", str(out), "--quiet"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"dvip train ({tree.name}) failed:\n{done.stderr[-2000:]}")
    with open(out / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    if int(last["step"]) != steps:
        raise RuntimeError(f"dvip train ({tree.name}) stopped at step {last['step']}")
    return {"wall_s": wall, "loop_s": float(last["seconds"])}


def run(args) -> dict:
    config = make_config(args.preset)
    steps = config.steps if args.full else args.steps
    versions = {"baseline": args.baseline, "today": None}
    runs: dict[str, list[dict]] = {v: [] for v in versions}
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        trees = {v: version_tree(c, root / "trees") for v, c in versions.items()}
        for r in range(args.repeats):
            order = list(versions) if r % 2 == 0 else list(versions)[::-1]
            for v in order:
                out = root / f"run-{v}-{r}"
                runs[v].append(whole_run(trees[v], args.preset, steps, args.seed, out,
                                         args.threads))  # fmt: skip
                print(f"round {r + 1}: {v} {runs[v][-1]['wall_s']:.1f} s", flush=True)
        torch.set_num_threads(args.threads)
        (root / "step").mkdir()
        base = import_baseline(args.baseline, root / "step")
        device = torch.device("cpu")
        steppers = {"baseline": Stepper("baseline", config, device, base),
                    "today": Stepper("fp32", config, device)}  # fmt: skip
        torch.manual_seed(1)
        x = torch.rand(config.batch_size, config.seq_len, config.channels, config.image_size,
                       config.image_size)  # fmt: skip
        step_times, _ = interleaved_times(steppers, x, args.warmup, args.step_repeats)
    result = {}
    for v in versions:
        wall = [r["wall_s"] for r in runs[v]]
        loop_ms = [1e3 * r["loop_s"] / steps for r in runs[v]]
        guarded = 1e3 * statistics.median(step_times[v])
        result[v] = {
            "commit": versions[v] or "working tree", "wall_s": statistics.median(wall),
            "loop_ms_per_step": statistics.median(loop_ms), "guarded_step_ms": guarded,
            "beside_step_ms": statistics.median(loop_ms) - guarded,
            "outside_loop_s": statistics.median(r["wall_s"] - r["loop_s"] for r in runs[v]),
        }  # fmt: skip

    def ratio(key):
        if key == "guarded_step_ms":
            return statistics.median(a / b for a, b in zip(step_times["today"],
                                                         step_times["baseline"]))  # fmt: skip
        return statistics.median(a[key] / b[key] for a, b in zip(runs["today"], runs["baseline"]))

    result["ratios"] = {"wall_s": ratio("wall_s"), "loop_s": ratio("loop_s"),
                        "guarded_step_ms": ratio("guarded_step_ms")}  # fmt: skip
    return {"steps": steps, "runs": runs, "versions": result}


def markdown(results: dict) -> str:
    v, ratios = results["versions"], results["versions"]["ratios"]
    lines = [
        f"{results['date']}; CPU; torch {results['torch']}; {results['threads']} torch "
        f"thread(s); `dvip train --preset {results['preset']} --steps {results['steps']}` of "
        f"each version, {results['repeats']} round(s) in alternating order; the guarded step: "
        f"median of {results['step_repeats']} interleaved rounds; load average "
        f"{results['load_average']} at the start.",
        "",
        "| version | whole run s | outside the loop s | loop ms a step | guarded step ms | "
        "beside the step ms |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("baseline", "today"):
        r = v[name]
        lines.append(
            f"| {name} ({r['commit']}) | {r['wall_s']:.1f} | {r['outside_loop_s']:.1f} | "
            f"{r['loop_ms_per_step']:.1f} | {r['guarded_step_ms']:.1f} | "
            f"{r['beside_step_ms']:+.1f} |"
        )
    lines += [
        "",
        f"today / baseline: whole run {ratios['wall_s']:.2f}, the loop {ratios['loop_s']:.2f}, "
        f"the guarded step {ratios['guarded_step_ms']:.2f} (medians of paired ratios).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-objects")
    parser.add_argument("--baseline", default=BASELINE, help="commit of the old recipe")
    parser.add_argument("--steps", type=int, default=300, help="steps of each whole run")
    parser.add_argument("--full", action="store_true", help="the preset's own steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of whole runs")
    parser.add_argument("--step-repeats", type=int, default=20, help="rounds of guarded steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
        "preset": args.preset, "threads": args.threads, "repeats": args.repeats,
        "step_repeats": args.step_repeats, "baseline": args.baseline,
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }  # fmt: skip
    results.update(run(args))
    write_results(args.out, f"recipe-run-{args.preset}", results, markdown(results))


if __name__ == "__main__":
    main()
