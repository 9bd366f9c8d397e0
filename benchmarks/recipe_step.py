"""The object recipe's training step against the paper decoder's and an earlier commit's, in
one interleaved run.

    python -m benchmarks.recipe_step                      # 41bb5c4's cpu-objects as baseline
    python -m benchmarks.recipe_step --repeats 40 --baseline 41bb5c4

Each method is the guarded step that ``dvip train`` runs, one torch thread by default (two runs
side by side is the recipe), timed in interleaved rounds after warm-up steps, so load from
other processes hits every method alike:

- ``baseline``: ``cpu-objects`` as built by ``--baseline`` (default 41bb5c4, the last commit
  before this benchmark: every generator and encoder at width 16, grouped convolutions), its
  package extracted with ``git archive`` and imported as ``pyro_dvip_base``;
- ``wide``: today's code with 41bb5c4's networks (``--decoder-width 16 --residual-width 16``):
  what the faster pass alone gives, the same model;
- ``today``: today's ``cpu-objects`` preset;
- ``compile``: today's ``cpu-objects`` with the encoders and decoder under ``torch.compile``
  (its first step, compilation included, is reported);
- ``paper-decoder``: ``cpu-objects-paper``, the paper's networks at the same frame size, batch,
  sequence length and width (the target: ``today`` at most 1.5x this);
- ``sprites``: ``cpu-sprites`` (what and where, one channel), at its full sequence length (its
  first 500 steps train on 2 frames, so its minutes here overstate a run's).

Reported: the median step, frames/s and steps/s of each, the median over rounds of each
method's time divided by the baseline's and by the paper decoder's in the same round, and the
minutes a run of the preset's steps would take at that step time (training only). Writes
``benchmarks/results/recipe-step-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.step_speed import (
    Stepper,
    add_timing_arguments,
    import_baseline,
    interleaved_times,
    run_header,
    write_results,
)
from pyro_dvip.config import make_config

BASELINE = "41bb5c4"
METHODS = {
    "baseline": ("cpu-objects", {}),
    "wide": ("cpu-objects", dict(decoder_width=16, residual_width=16)),
    "today": ("cpu-objects", {}),
    "compile": ("cpu-objects", {}),
    "paper-decoder": ("cpu-objects-paper", {}),
    "sprites": ("cpu-sprites", {}),
}


def run(methods: list[str], device, base, warmup: int, repeats: int) -> dict:
    configs = {m: make_config(METHODS[m][0], **METHODS[m][1]) for m in methods}
    steppers = {}
    for m in methods:
        steppers[m] = Stepper("baseline" if m == "baseline" else "fp32", configs[m], device, base)
        if m == "compile":
            steppers[m].compile = True
    torch.manual_seed(1)
    x = {m: torch.rand(c.batch_size, c.seq_len, c.channels, c.image_size, c.image_size,
                       device=device) for m, c in configs.items()}  # fmt: skip
    times, first = interleaved_times(steppers, x, warmup, repeats)
    c = configs[methods[0]]
    frames = c.batch_size * c.seq_len

    def paired(m, ref):
        return statistics.median(a / b for a, b in zip(times[m], times[ref]))

    result = {}
    for m in methods:
        ms = 1e3 * statistics.median(times[m])
        result[m] = {
            "preset": METHODS[m][0], "overrides": METHODS[m][1], "step_ms": ms,
            "frames_per_s": frames / (ms / 1e3), "steps_per_s": 1e3 / ms,
            "first_step_s": first[m], "run_minutes": configs[m].steps * ms / 6e4,
            "run_steps": configs[m].steps,
        }  # fmt: skip
        if "baseline" in methods:
            result[m]["ratio_to_baseline"] = paired(m, "baseline")
        if "paper-decoder" in methods:
            result[m]["ratio_to_paper_decoder"] = paired(m, "paper-decoder")
    return result


def markdown(results: dict) -> str:
    lines = [
        f"{results['date']}; {results['device']}; torch {results['torch']}, pyro "
        f"{results['pyro']}; {results['threads']} torch thread(s); baseline "
        f"{results['baseline']}; median of {results['repeats']} interleaved rounds after "
        f"{results['warmup']} warm-up steps; load average {results['load_average']} at the start.",
        "",
        "| method | networks | step ms | steps/s | time / baseline | time / paper decoder | "
        "minutes for the preset's steps | first step s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = ["", "Minutes: the step time times the preset's steps as configured today (41bb5c4's "
             "cpu-objects trained 4,000), training only."]  # fmt: skip
    for m, r in results["methods"].items():
        extra = ", ".join(f"{k}={v}" for k, v in r["overrides"].items())
        name = r["preset"] + (f" ({extra})" if extra else "")
        lines.append(
            f"| {m} | {name} | {r['step_ms']:.1f} | {r['steps_per_s']:.2f} | "
            f"{r.get('ratio_to_baseline', float('nan')):.3f} | "
            f"{r.get('ratio_to_paper_decoder', float('nan')):.3f} | "
            f"{r['run_minutes']:.1f} ({r['run_steps']:,} steps) | {r['first_step_s']:.1f} |"
        )
    return "\n".join(lines + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--baseline", default=BASELINE, help="commit of the old recipe")
    add_timing_arguments(parser, repeats=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {
        **run_header(args, device),
        "load_average": " ".join(f"{v:.1f}" for v in os.getloadavg()),
    }
    with tempfile.TemporaryDirectory() as root:
        base = import_baseline(args.baseline, Path(root)) if "baseline" in args.methods else None
        results["methods"] = run(args.methods, device, base, args.warmup, args.repeats)
    write_results(args.out, f"recipe-step-{device.type}", results, markdown(results))


if __name__ == "__main__":
    main()
