"""The training step against an earlier commit's, in one run, with the hand-written loss alongside.

    python -m benchmarks.step_speed                       # every size, 1 torch thread
    python -m benchmarks.step_speed --sizes cpu-objects-paper --variants fp32 bf16 --repeats 30
    python -m benchmarks.step_speed --sizes cpu-sprites cpu-sprites-k8 --variants fp32 \
        --no-handwritten --baseline 29a285f --out benchmarks/results/glimpse

The step of today's ``pyro_dvip`` (``build.build_training`` and ``train._guarded_step``: the
guarded SVI step ``dvip train`` runs) is timed against the step of the package as it was at
``--baseline`` (default f01da48, the commit before the faster step), extracted with
``git archive`` into a temporary folder and imported as ``pyro_dvip_base``, with the same
sizes, seed and batch. The hand-written loss (``benchmarks/handwritten.py``) runs through
today's guarded step on today's layout, so Pyro's own cost is the ratio to it. Steps run in
interleaved rounds (each round times every method once, in a rotating order), so load from
other processes hits every method alike; the report gives the median step time, and the
median over rounds of each method's time divided by the baseline's in the same round.

At the paper size the report adds the floating-point operations of one training step
(``torch.utils.flop_counter``, forward and backward) and the fp32 matmul rate this process
reaches (best of repeated 2048x2048 matmuls at the same thread count): the step's share of
the arithmetic limit. Writes ``benchmarks/results/step-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch

from benchmarks.handwritten import handwritten_loss
from pyro_dvip import NegELBO, distributed
from pyro_dvip.build import build_training
from pyro_dvip.config import RETIRED, make_config
from pyro_dvip.train import AUTOCAST_DTYPES, _guarded_step

SIZES = {
    "tiny": dict(factors=2, factor_dim=3, batch_size=4, seq_len=3, image_size=16, width=4,
                 obs_var=0.25, transition_layers=1),
    "cpu-demo": dict(preset="cpu-demo"),
    # called "cpu-objects" in results recorded before 2026-11-30
    "cpu-objects-paper": dict(preset="cpu-objects-paper"),
    "paper-mnist": dict(preset="paper-mnist"),
    "cpu-sprites": dict(preset="cpu-sprites"),  # what/where, at its full sequence length
    "cpu-sprites-k8": dict(preset="cpu-sprites", factors=8),
    "cpu-video-k8": dict(preset="cpu-video", factors=8),  # in colour, over a static background
}  # fmt: skip
DEFAULT_SIZES = ["tiny", "cpu-demo", "cpu-objects-paper", "paper-mnist"]
# Today's step: precision and torch.compile of the encoder and decoder
VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "fp16": ("fp16", False),
            "compile": ("fp32", True), "bf16-compile": ("bf16", True)}  # fmt: skip
BASELINE = "f01da48"


def import_baseline(commit: str, root: Path):
    """``pyro_dvip.train`` and ``pyro_dvip`` as of ``commit``, imported as ``pyro_dvip_base``
    (its own modules; its data package imports today's, which the step does not use)."""
    archive = subprocess.run(["git", "archive", commit, "pyro_dvip"], capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    package = root / "pyro_dvip"
    spec = importlib.util.spec_from_file_location(
        "pyro_dvip_base", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["pyro_dvip_base"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("pyro_dvip_base.train"), module


def config_for(size: str):
    values = dict(SIZES[size])
    return make_config(values.pop("preset", None), **values)


def baseline_config(config, base_package):
    """``config`` as the baseline commit's own ``TrainConfig``: the fields it knows, and the
    options retired since at the value that builds today's model."""
    values = json.loads(config.to_json())
    values.update({name: neutral(values) for name, (neutral, *_) in RETIRED.items()})
    known = {f.name for f in dataclasses.fields(base_package.TrainConfig)}
    return base_package.TrainConfig(**{k: v for k, v in values.items() if k in known})


class Stepper:
    """One model and optimizer taking guarded training steps on a fixed batch."""

    def __init__(self, method: str, config, device: torch.device, base=None):
        self.device = device
        self.context = distributed.Context()
        self.compile = False
        self.autocast = self.scaler = None
        torch.manual_seed(0)
        if method == "baseline":
            base_train, base_package = base
            old_config = baseline_config(config, base_package)
            builder = getattr(base_package, "build", base_train)  # build.py since 2026-12-07
            if hasattr(builder, "build_training"):  # as that commit trains: layout and Adam
                self.dvip, self.optimizer = builder.build_training(old_config, device)
            else:  # commits before channels-last weights and fused Adam
                self.dvip = builder.build_model(old_config).to(device)
                self.optimizer = torch.optim.Adam(self.dvip.parameters(), lr=config.lr)
            self.loss = base_package.NegELBO(self.dvip, "trace")
            self.step_fn = base_train._guarded_step
            return
        precision, self.compile = VARIANTS.get(method, ("fp32", False))
        self.autocast = AUTOCAST_DTYPES[precision]
        if precision == "fp16":  # CUDA only, as in training
            self.scaler = torch.amp.GradScaler(device.type)
        self.dvip, self.optimizer = build_training(config, device)
        if method == "handwritten":
            self.loss = lambda x, kl_scale: handwritten_loss(self.dvip, x)
        else:
            self.loss = NegELBO(self.dvip, "trace")
        self.step_fn = _guarded_step

    def step(self, x: torch.Tensor) -> None:
        args = (self.loss, self.optimizer, self.dvip, x, 1.0, 1e-4, False, self.context,
                self.device)  # fmt: skip
        if self.step_fn is _guarded_step:
            args += (self.autocast, self.scaler)
        loss, _ = self.step_fn(*args)
        if loss is None:
            raise RuntimeError("non-finite step in the benchmark")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def warm_up(stepper: Stepper, x: torch.Tensor, steps: int) -> float:
    """Warm-up steps; returns the first one's seconds (compilation, when compiled)."""
    if stepper.compile:
        for net in (stepper.dvip.encoder, stepper.dvip.decoder):
            net.forward = torch.compile(net.forward)
    started = time.perf_counter()
    stepper.step(x)
    first = time.perf_counter() - started
    for _ in range(steps - 1):
        stepper.step(x)
    return first


def interleaved_times(steppers: dict, x, warmup: int, repeats: int):
    """Warm every stepper up, then time one step of each per round, in a rotating order, so
    load from other processes hits every method alike: ({method: [seconds per round]},
    {method: first step's seconds}). ``x``: the frames every method steps on, or a dict of
    each method's."""
    methods = list(steppers)
    xs = x if isinstance(x, dict) else dict.fromkeys(methods, x)
    times: dict[str, list[float]] = {m: [] for m in methods}
    first: dict[str, float] = {}
    with pyro.validation_enabled(False):  # as in training
        for m, stepper in steppers.items():
            first[m] = warm_up(stepper, xs[m], warmup)
        for r in range(repeats):
            for m in methods[r % len(methods) :] + methods[: r % len(methods)]:
                started = time.perf_counter()
                steppers[m].step(xs[m])
                times[m].append(time.perf_counter() - started)
    return times, first


def time_size(size: str, methods: list[str], device, base, warmup: int, repeats: int) -> dict:
    config = config_for(size)
    steppers = {m: Stepper(m, config, device, base) for m in methods}
    torch.manual_seed(1)
    x = torch.rand(config.batch_size, config.seq_len, config.channels, config.image_size,
                   config.image_size, device=device)  # fmt: skip
    times, first = interleaved_times(steppers, x, warmup, repeats)
    frames = config.batch_size * config.seq_len
    result = {
        "batch": config.batch_size, "seq_len": config.seq_len, "image_size": config.image_size,
        "width": config.width, "factors": f"{config.factors}x{config.factor_dim}",
        "step_ms": {m: 1e3 * statistics.median(t) for m, t in times.items()},
        "first_step_s": first,
    }  # fmt: skip
    result["frames_per_s"] = {m: frames / (ms / 1e3) for m, ms in result["step_ms"].items()}
    ref = "baseline" if "baseline" in methods else methods[0]
    result["ratio_to_baseline"] = {
        m: statistics.median(a / b for a, b in zip(t, times[ref])) for m, t in times.items()
    }
    if "handwritten" in methods and "fp32" in methods:
        result["pyro_over_handwritten"] = statistics.median(
            a / b for a, b in zip(times["fp32"], times["handwritten"])
        )
    return result


def step_gflop(size: str, device) -> float:
    """Floating-point operations of one fp32 training step (forward and backward), GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    config = config_for(size)
    stepper = Stepper("fp32", config, device)
    x = torch.rand(config.batch_size, config.seq_len, config.channels, config.image_size,
                   config.image_size, device=device)  # fmt: skip
    with pyro.validation_enabled(False), FlopCounterMode(display=False) as counter:
        stepper.step(x)
    return counter.get_total_flops() / 1e9


def matmul_gflops(device, n: int = 2048, repeats: int = 10) -> float:
    """The fp32 matmul rate this process reaches: the best of ``repeats`` n x n products."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        started = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def markdown(results: dict) -> str:
    lines = [
        f"{results['date']}; {results['device']}; torch {results['torch']}, pyro "
        f"{results['pyro']}; {results['threads']} torch thread(s); baseline "
        f"{results['baseline']}; median of {results['repeats']} interleaved rounds after "
        f"{results['warmup']} warm-up steps.",
        "",
        "| size | method | step ms | frames/s | time / baseline (paired median) | first step s |",
        "|---|---|---|---|---|---|",
    ]
    for size, r in results["sizes"].items():
        for m, ms in r["step_ms"].items():
            lines.append(
                f"| {size} | {m} | {ms:.1f} | {r['frames_per_s'][m]:.0f} | "
                f"{r['ratio_to_baseline'][m]:.3f} | {r['first_step_s'][m]:.1f} |"
            )
    lines += ["", "| size | Pyro (fp32) / hand-written, same guarded step |", "|---|---|"]
    for size, r in results["sizes"].items():
        if "pyro_over_handwritten" in r:
            lines.append(f"| {size} | {r['pyro_over_handwritten']:.3f} |")
    for size, r in results["sizes"].items():
        if "gflop_per_step" in r:
            gflop = r["gflop_per_step"]
            rate = gflop * 1e3 / r["step_ms"]["fp32"]
            lines += [
                "",
                f"{size}: {gflop:.1f} GFLOP a step ({gflop / (r['batch'] * r['seq_len']):.2f}"
                f" per frame); fp32 step {rate:.1f} GFLOP/s against a measured fp32 matmul "
                f"rate of {results['matmul_gflops']:.1f} GFLOP/s: "
                f"{rate / results['matmul_gflops']:.0%} of the arithmetic limit",
            ]
    return "\n".join(lines)


def add_timing_arguments(parser: argparse.ArgumentParser, repeats: int) -> None:
    """The options every interleaved-rounds benchmark takes."""
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))


def run_header(args, device: torch.device) -> dict:
    """What a result file records of the run: when, where, which versions, how it was timed."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"CPU ({platform.machine()})",
        "torch": torch.__version__, "pyro": pyro.__version__, "threads": args.threads,
        "baseline": args.baseline, "warmup": args.warmup, "repeats": args.repeats,
    }  # fmt: skip


def write_results(out: Path, stem: str, results: dict, table: str) -> None:
    """``out/stem.json`` and ``out/stem.md``, and the table printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, choices=list(SIZES))
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16"],
                        choices=list(VARIANTS))  # fmt: skip
    parser.add_argument("--no-handwritten", action="store_true")
    parser.add_argument("--baseline", default=BASELINE, help="commit of the old step")
    add_timing_arguments(parser, repeats=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = ["baseline", *args.variants] + ([] if args.no_handwritten else ["handwritten"])
    results = {**run_header(args, device), "sizes": {}}
    with tempfile.TemporaryDirectory() as root:
        base = import_baseline(args.baseline, Path(root))
        for size in args.sizes:
            # Paper sizes take seconds a step on a CPU: fewer rounds there.
            slow = device.type == "cpu" and size.startswith("paper")
            repeats = max(3, args.repeats // 5) if slow else args.repeats
            r = time_size(size, methods, device, base, args.warmup, repeats)
            if size.startswith("paper"):
                r["gflop_per_step"] = step_gflop(size, device)
                results["matmul_gflops"] = matmul_gflops(device)
            results["sizes"][size] = r
            print(f"{size}: " + ", ".join(f"{m} {ms:.1f} ms" for m, ms in r["step_ms"].items()),
                  flush=True)  # fmt: skip
    write_results(args.out, f"step-{device.type}", results, markdown(results))


if __name__ == "__main__":
    main()
