"""Factor-object alignment against training time: the position probes of `dvip evaluate` on
every checkpoint of one or more Moving MNIST runs, with the untrained floor, as a CSV and a
figure. Cheaper than `dvip evaluate --checkpoint` on each checkpoint (probes only: no MI, bound,
intervention or generations), so it can follow a run every 2,000 steps.

    python examples/alignment_curve.py runs/recipe/factored-s0 runs/recipe/entangled-s0 \\
        --out docs/figures/alignment-curve.png

Writes the figure and, beside it, a CSV with one row per checkpoint (and one per run for its
untrained floor, step 0): the probe matrix R²[factor, digit], the whole-latent R², the smallest
matched R², the largest leakage, the mean gap, and the prediction saving per factor
(1 − KL(t≥2)/KL(t=1), from ``held_out_bound`` on the first 128 of the sequences, 4 posterior
samples, as in `dvip evaluate`): whether the transitions have started to predict. A
one-factor (entangled) run is probed on its most favourable of 20 random splits into groups
of the config's factor size, as in `dvip evaluate`. Training time is the `seconds` column of
the run's metrics.csv at the checkpoint's step (the step logged closest to it). `--probe mlp`
fits every probe, the floor's included, with the MLP of `dvip evaluate --probe mlp`.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from pyro_dvip.build import build_model, load
from pyro_dvip.config import TrainConfig
from pyro_dvip.evaluation.alignment import (
    Probe,
    alignment_summary,
    best_probe_partition,
    ground_truth_targets,
)
from pyro_dvip.evaluation.bound import held_out_bound
from pyro_dvip.evaluation.held_out import held_out_sequences
from pyro_dvip.evaluation.mutual_info import contiguous_groups
from pyro_dvip.evaluation.posterior import filter_sequences

POSITION = slice(0, 2)  # the headline probe of `dvip evaluate`: each digit's (x, y)
BOUND_SEQUENCES, PARTICLES = 128, 4  # the `dvip evaluate` defaults for the bound


def probe_model(
    dvip, config: TrainConfig, data, partitions: int, seed: int, model: str = "ridge"
) -> dict:
    """Position-probe alignment of one model on held-out Moving MNIST ``data``; ``model`` is
    what the probes fit (``dvip evaluate --probe``)."""
    torch.manual_seed(seed)
    features = filter_sequences(dvip, data.frames).flat("means").cpu().numpy()
    targets = ground_truth_targets(data.positions, data.velocities)[..., POSITION]
    probe = Probe(features, targets, seed=seed, model=model)
    if dvip.num_factors > 1:
        r2 = probe.matrix(contiguous_groups(dvip.z_dim, dvip.factor_dim))
    else:
        _, r2, _ = best_probe_partition(probe, dvip.z_dim, config.factor_dim, partitions, seed)
    summary = alignment_summary(r2)
    torch.manual_seed(seed)
    bound = held_out_bound(dvip, data.frames[:BOUND_SEQUENCES], particles=PARTICLES, iw_samples=1)
    saving = [round(v, 4) for v in bound["prediction_saving"]]
    finite = [v for v in saving if v == v]
    return {
        "probe": model,
        "r2": np.round(r2, 4).tolist(),
        "whole_r2": np.round(probe.whole(), 4).tolist(),
        "min_matched": summary["min_matched"],
        "max_leakage": summary["max_leakage"],
        "mean_gap": summary["mean_gap"],
        "prediction_saving": saving,
        "mean_prediction_saving": float(np.mean(finite)) if finite else float("nan"),
    }


def training_seconds(run_dir: Path) -> dict[int, float]:
    """Step -> training seconds, from metrics.csv (empty if the run logged none)."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {}
    with open(path) as f:
        return {int(r["step"]): float(r["seconds"]) for r in csv.DictReader(f) if r["seconds"]}


def curve(
    run_dir: Path, sequences: int, partitions: int, seed: int, model: str = "ridge"
) -> list[dict]:
    config = TrainConfig.load(run_dir / "config.json")
    if config.data is not None:
        raise SystemExit(f"error: {run_dir} trained on video: no ground truth to probe")
    checkpoints = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    if not checkpoints:
        raise SystemExit(f"error: {run_dir} has no checkpoints")
    data = held_out_sequences(config, sequences)
    seconds = training_seconds(run_dir)
    kind = "entangled" if config.entangled else "factored"
    torch.manual_seed(seed)
    base = {"run": str(run_dir), "model": kind}
    floor = probe_model(build_model(config).eval(), config, data, partitions, seed, model)
    rows = [{**base, "step": 0, "minutes": 0.0, "floor": True, **floor}]
    for path in checkpoints:
        step = int(path.stem.split("_")[1])
        logged = min(seconds, key=lambda s: abs(s - step)) if seconds else None
        minutes = round(seconds[logged] / 60, 2) if logged is not None else float("nan")
        dvip = load(run_dir, checkpoint=path).eval()
        trained = probe_model(dvip, config, data, partitions, seed, model)
        rows.append({**base, "step": step, "minutes": minutes, "floor": False, **trained})
        print(f"{run_dir} step {step}: position R² {rows[-1]['r2']}, "
              f"min matched {rows[-1]['min_matched']:.2f}, "
              f"max leakage {rows[-1]['max_leakage']:.2f}", flush=True)  # fmt: skip
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, lower) = plt.subplots(2, 1, figsize=(9.5, 6.5), sharex=True,
                                    gridspec_kw={"height_ratios": [2, 1]})  # fmt: skip
    floors = [r for r in rows if r["floor"]]
    top = max(max(r["min_matched"], r["max_leakage"]) for r in floors)
    ax.axhspan(min(0.0, min(r["max_leakage"] for r in floors)), top, color="0.85",
               label="untrained floor")  # fmt: skip
    for i, run in enumerate(dict.fromkeys(r["run"] for r in rows)):
        trained = [r for r in rows if r["run"] == run and not r["floor"]]
        x = [r["minutes"] if r["minutes"] == r["minutes"] else r["step"] for r in trained]
        colour = f"C{i}"
        label = Path(run).name
        ax.plot(x, [r["min_matched"] for r in trained], "-o", color=colour,
                label=f"{label}: smallest matched R²")  # fmt: skip
        ax.plot(x, [r["max_leakage"] for r in trained], "--x", color=colour,
                label=f"{label}: largest leakage")  # fmt: skip
        lower.plot(x, [r["mean_prediction_saving"] for r in trained], "-o", color=colour,
                   label=label)  # fmt: skip
    lower.axhline(0, color="0.5", lw=0.8)
    floor_text = ", ".join(f"{r['mean_prediction_saving']:.2f}" for r in floors)
    lower.set_title(f"untrained floor: {floor_text} (below the axis)", fontsize=8)
    lower.set_ylabel("prediction saving\n1 − KL(t≥2)/KL(t=1)")
    lower.set_ylim(min(-0.05, lower.get_ylim()[0]), 1.0)
    lower.grid(alpha=0.3)
    lower.set_xlabel("training time (minutes; steps where no time was logged)")
    probes = ", ".join(dict.fromkeys(r.get("probe", "ridge") for r in rows))
    ax.set_ylabel(f"held-out position-probe R² ({probes})")
    ax.set_ylim(-0.05, 1.0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the curves
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="Moving MNIST run directories")
    parser.add_argument("--out", type=Path, required=True, help="figure path (.png)")
    parser.add_argument("--sequences", type=int, default=400, help="held-out sequences")
    parser.add_argument("--partitions", type=int, default=20, help="splits for entangled runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--probe", choices=["ridge", "mlp"], default="ridge",
        help="what the probes fit, as `dvip evaluate --probe` (default ridge)",
    )  # fmt: skip
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "config.json").exists():
            parser.error(f"{run}: not a run directory (no config.json)")
    rows = [row for run in args.runs for row in curve(run, args.sequences, args.partitions,
                                                       args.seed, args.probe)]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v
                             for k, v in row.items()})  # fmt: skip
    plot(rows, args.out)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
