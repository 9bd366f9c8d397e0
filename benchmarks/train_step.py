"""Training-step benchmark: Pyro's ELBOs against the same ELBO written by hand, in one run.

    python -m benchmarks.train_step                 # every size, curves, data; ~5 min on 2 cores
    python -m benchmarks.train_step --sizes tiny cpu-demo --no-curves --repeats 10

For each size, the same networks, batch, device and seed are trained with (a) the hand-written
PyTorch loss (``benchmarks/handwritten.py``), (b) ``Trace_ELBO`` and (c) ``TraceMeanField_ELBO``
through ``pyro_dvip.NegELBO``, each with Adam. Steps are timed in interleaved rounds after a
warm-up (so drift in machine load hits every method alike); the report gives the median step
time, training frames/s, peak memory and the ratios b/a and c/a. Then scaling curves (step time
against T, against K at equal z_dim, against batch size) and the Moving MNIST generation time
per batch against the step time. Writes ``benchmarks/results/<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch

from benchmarks.handwritten import handwritten_loss
from pyro_dvip import DVIP, NegELBO
from pyro_dvip.data import MovingMNIST, load_digits

SIZES = {
    "paper-mnist": dict(K=2, d=20, B=100, T=5, S=64, width=64),
    "paper-video": dict(K=8, d=25, B=100, T=5, S=64, width=64),
    "cpu-demo": dict(K=2, d=10, B=32, T=8, S=32, width=16),
    "tiny": dict(K=2, d=3, B=4, T=3, S=16, width=4),  # Pyro's per-site cost is visible here
}
METHODS = ("handwritten", "trace", "meanfield")


def make_loss(method: str, dvip: DVIP):
    if method == "handwritten":
        return lambda x: handwritten_loss(dvip, x)
    return NegELBO(dvip, method)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# GPU variants: name -> (TF32 matmuls, autocast dtype, channels_last, torch.compile networks)
VARIANTS = {
    "fp32": (False, None, False, False),
    "tf32": (True, None, False, False),
    "bf16-autocast": (False, torch.bfloat16, False, False),
    "channels_last": (False, None, True, False),
    "compile": (False, None, False, True),
}


class Trainer:
    """One model + Adam + loss, stepping on a fixed batch, optionally in a GPU variant
    (bf16 autocast: distributions are still built in float32, see networks.full_precision)."""

    def __init__(self, method: str, size: dict, device: torch.device, seed: int, variant="fp32"):
        _, self.autocast, channels_last, compile_networks = VARIANTS[variant]
        self.device = device
        torch.manual_seed(seed)
        self.dvip = DVIP(size["K"], size["d"], image_size=size["S"], width=size["width"]).to(device)
        if channels_last:
            self.dvip.to(memory_format=torch.channels_last)
        if compile_networks:
            self.dvip.encoder = torch.compile(self.dvip.encoder)
            self.dvip.decoder = torch.compile(self.dvip.decoder)
        self.loss = make_loss(method, self.dvip)
        self.optimizer = torch.optim.Adam(self.dvip.parameters(), lr=3e-4)

    def step(self, x: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, self.autocast, enabled=self.autocast is not None):
            loss = self.loss(x)
        loss.backward()
        self.optimizer.step()


def time_methods(
    size: dict, methods, device, warmup: int, repeats: int, seed: int = 0, variant: str = "fp32"
) -> dict[str, float]:
    """Median seconds per step of each method, timed in interleaved rounds."""
    torch.manual_seed(seed)
    x = torch.rand(size["B"], size["T"], 3, size["S"], size["S"], device=device)
    trainers = {m: Trainer(m, size, device, seed, variant) for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    with pyro.validation_enabled(False):  # as in training
        for trainer in trainers.values():
            for _ in range(warmup):
                trainer.step(x)
        for r in range(repeats):
            order = list(methods)[r % len(methods) :] + list(methods)[: r % len(methods)]
            for m in order:
                synchronize(device)
                start = time.perf_counter()
                trainers[m].step(x)
                synchronize(device)
                times[m].append(time.perf_counter() - start)
    return {m: statistics.median(t) for m, t in times.items()}


def peak_memory_mib(size_name: str, method: str, device: torch.device) -> float:
    """Peak memory of a few training steps: CUDA allocator peak, or on CPU the growth of the
    process's max RSS over what importing torch took (in a fresh subprocess, so methods do
    not share a high-water mark)."""
    size = SIZES[size_name]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(method, size, device, 0)
        x = torch.rand(size["B"], size["T"], 3, size["S"], size["S"], device=device)
        for _ in range(3):
            trainer.step(x)
        return torch.cuda.max_memory_allocated(device) / 2**20
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.train_step", "--peak-only", size_name, method],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def _peak_only(size_name: str, method: str) -> None:
    size = SIZES[size_name]
    imported = _high_water_mib()  # torch and the package alone
    trainer = Trainer(method, size, torch.device("cpu"), 0)
    x = torch.rand(size["B"], size["T"], 3, size["S"], size["S"])
    with pyro.validation_enabled(False):
        for _ in range(3):
            trainer.step(x)
    print(_high_water_mib() - imported)


def _high_water_mib() -> float:
    """Peak resident memory of this process image (VmHWM; unlike ru_maxrss, which Linux
    carries over from the parent through fork and exec, it starts afresh in a new process)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def data_time(size: dict, device: torch.device, repeats: int) -> float:
    digits, labels = load_digits("train")
    data = MovingMNIST(digits, labels, image_size=size["S"], seq_len=size["T"], device=device)
    data.sample(size["B"])
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        data.sample(size["B"])
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def variants(names, sizes, device, warmup: int, repeats: int) -> list[dict]:
    """Step time of the hand-written loss and Trace_ELBO in each variant (a GPU section)."""
    rows = []
    for name in sizes:
        for variant in names:
            tf32 = VARIANTS[variant][0]
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            try:
                t = time_methods(SIZES[name], ("handwritten", "trace"), device, warmup, repeats,
                                 variant=variant)  # fmt: skip
            finally:
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            rows.append({"size": name, "variant": variant,
                         **{f"{m}_ms": 1e3 * s for m, s in t.items()}})  # fmt: skip
    return rows


def curves(device, warmup: int, repeats: int) -> list[dict]:
    base = SIZES["cpu-demo"]
    rows = []
    variants = [("T", T, {**base, "T": T}) for T in (2, 4, 8, 16)]
    variants += [("K", K, {**base, "K": K, "d": 40 // K}) for K in (1, 2, 4, 8)]  # z_dim 40
    variants += [("B", B, {**base, "B": B}) for B in (8, 16, 32, 64)]
    for axis, value, size in variants:
        t = time_methods(size, ("handwritten", "trace"), device, warmup, repeats)
        rows.append({"axis": axis, "value": value, **{f"{m}_ms": 1e3 * s for m, s in t.items()}})
    return rows


def markdown(results: dict) -> str:
    lines = [
        f"Device: {results['device']}; torch {results['torch']}, pyro {results['pyro']}, "
        f"{results['threads']} threads; {results['repeats']} timed steps per method after "
        f"{results['warmup']} warm-up steps, median.",
        "",
        "| size | method | step ms | frames/s | peak MiB (CPU: over import) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["sizes"].items():
        for m in METHODS:
            lines.append(
                f"| {name} | {m} | {1e3 * r['step_s'][m]:.1f} | {r['frames_per_s'][m]:.0f} | "
                f"{r['peak_mib'].get(m, float('nan')):.0f} | {r['ratio'][m]:.3f} |"
            )
    lines += ["", "| size | data ms per batch | data / step (trace) |", "|---|---|---|"]
    for name, r in results["sizes"].items():
        lines.append(
            f"| {name} | {1e3 * r['data_s']:.2f} | {r['data_s'] / r['step_s']['trace']:.3%} |"
        )
    if results.get("curves"):
        lines += [
            "",
            "| axis | value | hand-written ms | Trace_ELBO ms | ratio |",
            "|---|---|---|---|---|",
        ]
        for c in results["curves"]:
            ratio = c["trace_ms"] / c["handwritten_ms"]
            lines.append(
                f"| {c['axis']} | {c['value']} | {c['handwritten_ms']:.1f} | "
                f"{c['trace_ms']:.1f} | {ratio:.3f} |"
            )
    if results.get("variants"):
        lines += [
            "",
            "| size | variant | hand-written ms | Trace_ELBO ms | ratio |",
            "|---|---|---|---|---|",
        ]
        for v in results["variants"]:
            lines.append(
                f"| {v['size']} | {v['variant']} | {v['handwritten_ms']:.1f} | "
                f"{v['trace_ms']:.1f} | {v['trace_ms'] / v['handwritten_ms']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--no-curves", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--variants",
        nargs="*",
        choices=list(VARIANTS),
        help="precision/layout/compile variants to time (default: all on CUDA, none on CPU)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--peak-only", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_only:
        _peak_only(*args.peak_only)
        return

    device = torch.device(args.device)
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    results = {
        "device": device_name,
        "torch": torch.__version__, "pyro": pyro.__version__,
        "threads": torch.get_num_threads(), "warmup": args.warmup, "repeats": args.repeats,
        "sizes": {},
    }  # fmt: skip
    for name in args.sizes:
        size = SIZES[name]
        # Paper sizes on a CPU take seconds a step: fewer repeats there.
        repeats = (
            args.repeats if size["S"] < 64 or device.type == "cuda" else max(3, args.repeats // 2)
        )
        step_s = time_methods(size, METHODS, device, args.warmup, repeats)
        frames = size["B"] * size["T"]
        results["sizes"][name] = {
            "size": size,
            "step_s": step_s,
            "frames_per_s": {m: frames / s for m, s in step_s.items()},
            "ratio": {m: s / step_s["handwritten"] for m, s in step_s.items()},
            "peak_mib": {}
            if args.no_memory
            else {m: peak_memory_mib(name, m, device) for m in METHODS},
            "data_s": data_time(size, device, repeats=20),
        }
        print(
            f"{name}: " + ", ".join(f"{m} {1e3 * s:.1f} ms" for m, s in step_s.items()), flush=True
        )
    if not args.no_curves:
        results["curves"] = curves(device, args.warmup, args.repeats)
    chosen = args.variants if args.variants is not None else (
        list(VARIANTS) if device.type == "cuda" else [])  # fmt: skip
    if chosen:
        results["variants"] = variants(chosen, args.sizes, device, args.warmup, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / device.type
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    stem.with_suffix(".md").write_text(markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
