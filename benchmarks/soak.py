"""Soak test: a long training run whose resident memory is sampled over time.

    python -m benchmarks.soak --steps 3000 --out runs/soak

Trains the ``cpu-demo`` preset (or ``--preset``) in this process while a thread reads
VmRSS from /proc every second; writes ``soak.json`` (samples and summary) into the run
directory. Memory is flat when the RSS growth over the second half of the run is small
compared with the RSS itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from pathlib import Path

import torch

from pyro_dvip import make_config, train


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("runs/soak"))
    args = parser.parse_args()

    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        start = time.perf_counter()
        while not done.is_set():
            samples.append((time.perf_counter() - start, rss_mib()))
            done.wait(1.0)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    config = make_config(args.preset, steps=args.steps, checkpoint_every=max(args.steps // 10, 1))
    result = train(config, args.out, progress=False)
    done.set()
    thread.join()

    half = [rss for t, rss in samples if t >= samples[-1][0] / 2]
    summary = {
        "preset": args.preset,
        "steps": args.steps,
        "seconds": samples[-1][0],
        "rss_mib_first_sample": samples[0][1],
        "rss_mib_at_half": half[0],
        "rss_mib_end": samples[-1][1],
        "rss_mib_max": max(rss for _, rss in samples),
        "growth_second_half_mib": half[-1] - half[0],
        "skipped_steps": result.metrics[-1].get("skipped_steps", 0),
        "final_elbo_per_frame": next(r["elbo"] for r in reversed(result.metrics) if "elbo" in r),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (args.out / "soak.json").write_text(json.dumps({"summary": summary, "samples": samples}))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
