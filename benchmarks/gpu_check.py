"""The first check to run on a GPU: one table of what the paper-size step does there.

    bash benchmarks/gpu_check.sh                     # on the GPU machine, about 5 minutes
    python -m benchmarks.gpu_check --device cpu --smoke   # the same table at toy sizes

At the paper's Moving MNIST size (``paper-mnist``: batch 100, sequences of 5, 64x64 frames,
width 64, 2 factors of 20) it times the guarded step ``dvip train`` runs in fp32, bf16 and
fp32 under ``torch.compile`` (encoder and decoder compiled, as ``--compile`` does; its first
step, compilation included, is reported), each with its peak GPU memory; then doubles the
batch in fp32 and bf16 until a step runs out of memory or takes too long, reporting the
largest that fitted; then the object recipe (``cpu-objects``) and the paper decoder at the
same small size (``cpu-objects-paper``), steps/s. Every section has a time budget, so the whole
check ends in about 5 minutes on an H200 and never in more than ``--budget`` seconds of
timing (8 minutes by default). Writes ``gpu-check.json`` and ``gpu-check.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import pyro
import torch

from benchmarks.step_speed import Stepper, warm_up
from pyro_dvip.config import make_config

PAPER = dict(preset="paper-mnist")
SMOKE = dict(factors=2, factor_dim=3, batch_size=4, seq_len=3, image_size=16, width=4,
             transition_layers=1)  # fmt: skip


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def frames_for(config, device) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(config.batch_size, config.seq_len, config.channels, config.image_size,
                      config.image_size, device=device)  # fmt: skip


def time_steps(stepper: Stepper, x, device, steps: int, budget_s: float) -> tuple[float, int]:
    """Median seconds a step over up to ``steps`` steps, stopping once ``budget_s`` is spent."""
    times, started = [], time.perf_counter()
    while len(times) < steps and time.perf_counter() - started < budget_s:
        t = time.perf_counter()
        stepper.step(x)
        sync(device)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], len(times)


def config_of(values: dict, **overrides):
    values = {**values, **overrides}
    return make_config(values.pop("preset", None), **values)


def variant_row(name, precision, compiled, base, device, steps, budget_s) -> dict:
    config = config_of(base)
    reset_peak(device)
    stepper = Stepper(precision, config, device)
    stepper.compile = compiled
    x = frames_for(config, device)
    first = warm_up(stepper, x, 3)
    sync(device)
    step_s, n = time_steps(stepper, x, device, steps, budget_s)
    frames = config.batch_size * config.seq_len
    return {"measure": f"paper size, {name}", "frames_per_s": frames / step_s,
            "step_ms": 1e3 * step_s, "steps_timed": n, "first_step_s": first,
            "peak_gib": peak_gib(device), "batch": config.batch_size}  # fmt: skip


def largest_batch(precision, base, device, budget_s: float, max_step_s: float) -> dict:
    """Double the batch from the preset's until a step fails for memory, takes longer than
    ``max_step_s`` or the budget is spent: the largest batch whose step ran."""
    batch = config_of(base).batch_size
    fitted, stopped, started = None, "budget", time.perf_counter()
    while time.perf_counter() - started < budget_s:
        config = config_of(base, batch_size=batch)
        try:
            reset_peak(device)
            stepper = Stepper(precision, config, device)
            x = frames_for(config, device)
            t = time.perf_counter()
            stepper.step(x)
            stepper.step(x)  # the second step holds Adam's state as training does
            sync(device)
            step_s = (time.perf_counter() - t) / 2
        except torch.cuda.OutOfMemoryError:
            stopped = f"out of memory at batch {batch}"
            break
        finally:
            stepper = x = None
        fitted = {"batch": batch, "step_s": step_s, "peak_gib": peak_gib(device),
                  "frames_per_s": batch * config.seq_len / step_s}  # fmt: skip
        if step_s > max_step_s:
            stopped = f"step over {max_step_s:.0f} s at batch {batch}"
            break
        batch *= 2
    reset_peak(device)
    return {"measure": f"largest batch, {precision}", "stopped": stopped, **(fitted or {})}


def recipe_row(preset: str, overrides: dict, device, steps, budget_s) -> dict:
    config = config_of({"preset": preset}, **overrides)
    stepper = Stepper("fp32", config, device)
    x = frames_for(config, device)
    warm_up(stepper, x, 3)
    step_s, n = time_steps(stepper, x, device, steps, budget_s)
    return {"measure": f"{preset}, fp32", "steps_per_s": 1 / step_s, "step_ms": 1e3 * step_s,
            "frames_per_s": config.batch_size * config.seq_len / step_s, "steps_timed": n,
            "batch": config.batch_size}  # fmt: skip


def cell(value, fmt) -> str:
    return "" if value is None else format(value, fmt)


def markdown(results: dict) -> str:
    lines = [
        f"{results['date']}; {results['device']}; torch {results['torch']}, pyro "
        f"{results['pyro']}; paper size = {results['paper_size']}.",
        "",
        "| measure | batch | frames/s | step ms | steps/s | peak GiB | first step s | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        step_ms = r.get("step_ms", 1e3 * r["step_s"] if "step_s" in r else None)
        lines.append(
            f"| {r['measure']} | {cell(r.get('batch'), ',')} | "
            f"{cell(r.get('frames_per_s'), ',.0f')} | {cell(step_ms, '.1f')} | "
            f"{cell(r.get('steps_per_s'), '.2f')} | "
            f"{cell(r.get('peak_gib'), '.2f')} | {cell(r.get('first_step_s'), '.1f')} | "
            f"{r.get('stopped', r.get('error', ''))} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks the script")
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16", "compile"],
                        choices=["fp32", "bf16", "compile"])  # fmt: skip
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measure")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds of timing in all")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (use --device cpu --smoke to try it)")
    base = SMOKE if args.smoke else PAPER
    recipe_size = SMOKE if args.smoke else {}
    share = args.budget / 8  # per section; compilation is not inside a section's budget
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"CPU ({platform.machine()})",
        "torch": torch.__version__, "pyro": pyro.__version__,
        "paper_size": "toy (--smoke)" if args.smoke else "B 100, T 5, 64x64, width 64, 2x20",
        "rows": [],
    }  # fmt: skip
    sections = [(f, (v, *{"fp32": ("fp32", False), "bf16": ("bf16", False),
                          "compile": ("fp32", True)}[v], base, device, args.steps, share))
                for f, v in [(variant_row, v) for v in args.variants]]  # fmt: skip
    sections += [(largest_batch, (p, base, device, share, 20.0)) for p in ("fp32", "bf16")]
    for preset in ("cpu-objects", "cpu-objects-paper"):
        overrides = {k: v for k, v in recipe_size.items() if k != "factor_dim"}
        sections.append((recipe_row, (preset, overrides, device, args.steps, share)))
    with pyro.validation_enabled(False):  # as in training
        for fn, fn_args in sections:
            try:
                row = fn(*fn_args)
            except Exception as e:  # noqa: BLE001 - one failed measure must not lose the rest
                row = {"measure": f"{fn.__name__} {fn_args[0]}",
                       "error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}  # fmt: skip
            results["rows"].append(row)
            print(markdown({**results, "rows": [row]}).splitlines()[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-check.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "gpu-check.md").write_text(markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
