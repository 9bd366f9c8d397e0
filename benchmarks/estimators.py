"""What the single-sample KL of the default estimator costs: Trace_ELBO against
TraceMeanField_ELBO (the authors' analytic KL), in gradient variance and in ELBO against time.

    python -m benchmarks.estimators                           # curves, then variance (~20 min)
    python -m benchmarks.estimators --parts variance --sizes cpu-demo --draws 50

- **variance**: on one fixed batch, ``--draws`` gradients of the per-video loss (``NegELBO``,
  train mode, as a training step computes them) for each estimator, draw i under the same seed
  for both (so both see the same z samples and differ only in how the KL is estimated). Reports
  the total variance tr Cov(g) (the sum over parameters of each element's variance across
  draws), overall and by network, the squared norm of the mean gradient, and the cosine
  between the two estimators' mean gradients (both are unbiased for the same gradient, so it
  should be near 1 when the draws suffice). Measured at initialisation and, for sizes with
  curves, at the models the curves trained.
- **curves**: the cpu-demo preset trained ``--steps`` steps with each estimator, the two runs
  side by side in two processes of one thread each (same seed, data and initial weights), the
  test ELBO (analytic KL, fixed noise, eval mode) every ``--every`` steps against the
  training seconds (``metrics.csv``'s ``seconds``: test-ELBO and checkpoint pauses excluded).

Writes ``benchmarks/results/estimators.json`` and ``.md`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pyro
import torch

from pyro_dvip import NegELBO
from pyro_dvip.build import build_model, load, make_data
from pyro_dvip.config import make_config
from pyro_dvip.train import train

ESTIMATORS = ("trace", "meanfield")
SIZES = ("cpu-demo", "paper-mnist")  # presets
GROUPS = ("encoder", "posterior", "transition", "decoder")


def gradient_moments(dvip, x: torch.Tensor, elbo: str, draws: int, seed: int) -> dict:
    """Total variance of the gradient over ``draws`` posterior samples on the batch ``x``."""
    loss_fn = NegELBO(dvip, elbo)
    params = [(n, p) for n, p in dvip.named_parameters() if p.requires_grad]
    sums = [torch.zeros_like(p, dtype=torch.float64) for _, p in params]
    squares = [torch.zeros_like(p, dtype=torch.float64) for _, p in params]
    seconds = 0.0
    dvip.train()
    with pyro.validation_enabled(False):
        for i in range(draws):
            torch.manual_seed(seed + i)  # draw i: the same noise for either estimator
            start = time.perf_counter()
            dvip.zero_grad(set_to_none=True)
            loss_fn(x).backward()
            seconds += time.perf_counter() - start
            for (_, p), s, q in zip(params, sums, squares):
                g = p.grad.double()
                s += g
                q += g * g
    mean = [s / draws for s in sums]
    by_group, mean_sq_by_group = dict.fromkeys(GROUPS, 0.0), dict.fromkeys(GROUPS, 0.0)
    for (name, _), s, q, m in zip(params, sums, squares, mean):
        var = ((q - s * s / draws) / (draws - 1)).clamp(min=0).sum().item()
        by_group[name.split(".")[0]] += var
        mean_sq_by_group[name.split(".")[0]] += (m * m).sum().item()
    return {
        "total_var": sum(by_group.values()),
        "by_group": by_group,
        "mean_sq_by_group": mean_sq_by_group,
        "mean_sq_norm": sum((m * m).sum().item() for m in mean),
        "seconds_per_gradient": seconds / draws,
        "_mean": torch.cat([m.flatten() for m in mean]),
    }


def measure_variance(dvip, x, draws: int, seed: int, size: str, point: str) -> list[dict]:
    rows = [
        {"size": size, "point": point, "estimator": e, "draws": draws,
         **gradient_moments(dvip, x, e, draws, seed)}
        for e in ESTIMATORS
    ]  # fmt: skip
    a, b = (r.pop("_mean") for r in rows)
    cosine = (a @ b / (a.norm() * b.norm())).item()
    for r in rows:
        r["mean_cosine"] = cosine
        print(
            f"{size} {point} {r['estimator']}: tr Cov {r['total_var']:.4g}, "
            f"|mean|^2 {r['mean_sq_norm']:.4g}, cos {cosine:.4f}, "
            f"{r['seconds_per_gradient']:.2f} s/grad",
            flush=True,
        )
    return rows


def fixed_batch(size: str, seed: int) -> torch.Tensor:
    config = make_config(size, device="cpu", seed=seed, test_sequences=1)
    stream, _ = make_data(config, torch.device("cpu"))
    return stream.sample(config.batch_size).frames


def run_curve(elbo: str, out: str, steps: int, every: int) -> None:
    """One training run of the cpu-demo preset with ``elbo`` (called in its own process)."""
    torch.set_num_threads(1)
    config = make_config(
        "cpu-demo", elbo=elbo, steps=steps, checkpoint_every=every, log_every=every,
        keep_checkpoints=1, device="cpu",
    )  # fmt: skip
    train(config, out, progress=False)


def curves(steps: int, every: int, root: Path) -> dict:
    """Both estimators trained side by side, one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {
        e: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.estimators",
                "--curve",
                e,
                str(root / e),
                "--steps",
                str(steps),
                "--every",
                str(every),
            ],
            env=env,
        )  # fmt: skip
        for e in ESTIMATORS
    }
    for e, proc in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"curve {e}: training failed")
    result = {}
    for e in ESTIMATORS:
        with open(root / e / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["test_elbo"]]
        result[e] = [
            {"step": int(r["step"]), "seconds": float(r["seconds"]),
             "test_elbo": float(r["test_elbo"]), "train_elbo": float(r["elbo"])}
            for r in rows
        ]  # fmt: skip
    return result


def markdown(result: dict) -> str:
    lines = [
        f"Measured {result['date']} on {result['machine']}; torch {result['torch']}, "
        f"pyro {result['pyro']}.",
        "",
        "Gradient of the per-video loss on one fixed batch, train mode; draw i uses the same "
        "seed (the same z samples) for both estimators.",
        "",
        "| size | model | estimator | draws | tr Cov(g) | encoder | posterior | transition | "
        "decoder | \\|E g\\|² | cos(E g_trace, E g_mf) | s / gradient |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["variance"]:
        g = r["by_group"]
        lines.append(
            f"| {r['size']} | {r['point']} | {r['estimator']} | {r['draws']} | "
            f"{r['total_var']:.4g} | "
            + " | ".join(f"{g[k]:.3g}" for k in GROUPS)
            + f" | {r['mean_sq_norm']:.4g} | {r['mean_cosine']:.4f} | "
            f"{r['seconds_per_gradient']:.3f} |"
        )
    lines.append("")
    ratios = {}
    for r in result["variance"]:
        ratios.setdefault((r["size"], r["point"]), {})[r["estimator"]] = (
            r["total_var"],
            r["by_group"],
        )
    lines += [
        "Variance of Trace_ELBO's gradient over TraceMeanField_ELBO's, whole and by network:",
        "",
        "| size | model | all | " + " | ".join(GROUPS) + " |",
        "|---|---|---|" + "---|" * len(GROUPS),
    ]
    for (size, point), v in ratios.items():
        by = " | ".join(f"{v['trace'][1][k] / v['meanfield'][1][k]:.3g}" for k in GROUPS)
        lines.append(f"| {size} | {point} | {v['trace'][0] / v['meanfield'][0]:.3g} | {by} |")
    if result.get("curves"):
        c = result["curves"]
        lines += [
            "",
            f"cpu-demo trained {result['curve_steps']} steps with each estimator, side by side, "
            "one thread each; test ELBO per frame (analytic KL, fixed noise, eval mode).",
            "",
            "| step | trace s | trace test ELBO | meanfield s | meanfield test ELBO |",
            "|---|---|---|---|---|",
        ]
        for a, b in zip(c["trace"], c["meanfield"]):
            lines.append(
                f"| {a['step']} | {a['seconds']:.1f} | {a['test_elbo']:.2f} | "
                f"{b['seconds']:.1f} | {b['test_elbo']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("curves", "variance"),
                        default=["curves", "variance"])  # fmt: skip
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--steps", type=int, default=500, help="steps of each curve")
    parser.add_argument("--every", type=int, default=50, help="test ELBO every this many steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the variance")
    parser.add_argument("--runs", help="folder for the curves' runs (default: a temporary one)")
    parser.add_argument("--train-steps", type=int, default=0,
                        help="also measure a model trained this many steps (trace) at each "
                        "size without curves")  # fmt: skip
    parser.add_argument("--skip-init", action="store_true", help="no measurement at init")
    parser.add_argument("--append", action="store_true",
                        help="add the variance rows to the existing results file")  # fmt: skip
    parser.add_argument("--out", default="benchmarks/results/estimators")
    parser.add_argument("--curve", nargs=2, metavar=("ELBO", "RUN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.curve:
        run_curve(*args.curve, args.steps, args.every)
        return

    torch.set_num_threads(args.threads)
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} torch thread(s)",
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "variance": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.runs or tmp)
        if "curves" in args.parts:
            result["curves"] = curves(args.steps, args.every, root)
            result["curve_steps"] = args.steps
        if "variance" in args.parts:
            for size in args.sizes:
                x = fixed_batch(size, args.seed)
                pyro.set_rng_seed(args.seed)  # the initial weights training would start from
                dvip = build_model(make_config(size))
                if not args.skip_init:
                    point = "init"
                    result["variance"] += measure_variance(dvip, x, args.draws, 10_000, size, point)
                if size != "cpu-demo" and args.train_steps > 0:
                    run = root / size
                    steps = args.train_steps
                    config = make_config(
                        size, steps=steps, checkpoint_every=steps, log_every=steps,
                        test_sequences=100, device="cpu", seed=args.seed,
                    )  # fmt: skip
                    train(config, run, progress=False)
                    point = f"trained (trace, {steps} steps)"
                    result["variance"] += measure_variance(
                        load(run), x, args.draws, 10_000, size, point
                    )
                if size == "cpu-demo" and (root / "trace" / "config.json").exists():
                    for e in ESTIMATORS:
                        point = f"trained ({e}, {args.steps} steps)"
                        result["variance"] += measure_variance(
                            load(root / e), x, args.draws, 10_000, size, point
                        )
    out = Path(args.out)
    if args.append:
        saved = json.loads(out.with_suffix(".json").read_text())
        result = {**saved, "variance": saved["variance"] + result["variance"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    if not math.isfinite(sum(r["total_var"] for r in result["variance"])):
        raise SystemExit("non-finite variance")


if __name__ == "__main__":
    main()
