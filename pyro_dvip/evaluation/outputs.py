"""What ``evaluate`` writes beside report.md: metrics.json, the CSV tables, the figures and
generations; and the summary ``dvip evaluate`` prints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from . import figures
from .alignment import NO_GROUND_TRUTH, SHARED_CHANNEL
from .generations import save_gif, save_grid
from .outcome import MODELS, has, made


def write_metrics(out: Path, metrics: dict) -> None:
    """``out/metrics.json``."""
    (out / "metrics.json").write_text(json.dumps(_null_nan(metrics), indent=2))


def _null_nan(value):
    """NaN (an undefined score, e.g. cross MI with one group) as JSON null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _null_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_null_nan(v) for v in value]
    return value


def _csv(value):
    return "n/a" if value is None else value


def write_csvs(out: Path, results: dict) -> None:
    """The tables; a part a model does not have (no ground truth on video, too few pairs, a
    numerical failure) is "n/a" in summary.csv and has no rows in the others; the probe and
    intervention tables are written only when some model has them."""
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["model", "elbo_per_frame", "elbo_per_frame_se", "iw_bound_per_frame", "same_mi",
             "cross_mi", "object_score", "min_matched_r2", "max_leakage", "mean_gap",
             "disentanglement", "completeness", "min_intervention_share", "swaps_per_crossing",
             "identity_consistent_share"]
        )  # fmt: skip
        for name, m in results.items():
            b, mi, a, iv, ident = (m[part] if has(m, part) else {} for part in
                                   ("bound", "mutual_info", "alignment", "intervention",
                                    "identity"))  # fmt: skip
            w.writerow(
                [name] + [b.get(k, "n/a") for k in ("elbo_per_frame", "elbo_per_frame_se",
                                                    "iw_bound_per_frame")]
                + [mi.get(k, "n/a") for k in ("same", "cross")]
                + [_csv(m["object_score"]["normalised"]) if has(m, "object_score") else "n/a"]
                + [a.get(k, "n/a") for k in ("min_matched", "max_leakage", "mean_gap",
                                             "disentanglement", "completeness")]
                + [iv.get("min_matched_share", "n/a")]
                + [_csv(ident["swaps_per_crossing"]) if ident else "n/a",
                   ident.get("consistent_share", "n/a")]
            )  # fmt: skip

    def table(name: str, header: list[str], part: str, key: str) -> None:
        models = [n for n, m in results.items() if has(m, part)]
        if not models:
            return
        with open(out / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for model in models:
                for i, row in enumerate(results[model][part][key]):
                    w.writerows([model, i, j, v] for j, v in enumerate(row))

    table("probe_r2.csv", ["model", "factor", "digit", "r2"], "alignment", "r2")
    table("mutual_info.csv", ["model", "factor_t", "factor_t_plus_1", "mi_bits"], "mutual_info",
          "matrix")  # fmt: skip
    table("intervention.csv", ["model", "factor", "channel", "share_of_change"], "intervention",
          "fractions")  # fmt: skip
    identity_columns = ["threshold_pixels", "sequences", "crossings", "swaps",
                        "swaps_per_crossing", "consistent_share"]  # fmt: skip
    if identity := [n for n, m in results.items() if has(m, "identity")]:
        with open(out / "identity.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["model", "factors", "digits", *identity_columns])
            for name in identity:
                m = results[name]["identity"]
                w.writerow(
                    [name, " ".join(map(str, m["factors"])), " ".join(map(str, m["digits"]))]
                    + [_csv(m[c]) for c in identity_columns]
                )
    with open(out / "prediction.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "step_after_context", "mse", "psnr", "ssim"])
        for name, m in results.items():
            if not has(m, "prediction"):
                continue
            p = m["prediction"]
            sources = {name: p["model"]}
            if name == "trained":
                sources["copy_last"] = p["copy_last"]
            for label, s in sources.items():
                for h, values in enumerate(zip(s["mse"], s["psnr"], s["ssim"]), start=1):
                    w.writerow([label, h, *values])


def write_figures(out: Path, results: dict, arrays: dict, num_digits: int) -> None:
    """The heatmaps and curves, with a panel for each model that has the numbers (none is
    drawn when no model has them), and every generation that was made."""

    def panels(key: str) -> dict:
        return {name: arrays[name][key] for name in MODELS if key in arrays[name]}

    def bounds(name):
        size, dim = arrays[name]["group_size"], len(arrays[name]["correlation"])
        return list(range(size, dim, size))

    if correlation := panels("correlation"):
        figures.heatmaps(
            correlation, out / "correlation.png",
            boundaries={name: bounds(name) for name in correlation},
            xlabel="unit of z_t", ylabel="unit of z_t+1",
        )  # fmt: skip
    if mi := panels("mi_matrix"):
        mi_max = max(float(np.max(matrix)) for matrix in mi.values())
        figures.heatmaps(
            mi, out / "mutual_info.png",
            vmin=0.0, vmax=max(mi_max, 1e-6), annotate=True, cmap="viridis",
            xlabel="factor j at t+1", ylabel="factor i at t",
        )  # fmt: skip
    if r2 := panels("r2"):  # ground truth only: no empty panels for video
        figures.heatmaps(
            r2, out / "probe_r2.png",
            vmin=0.0, vmax=1.0, annotate=True, cmap="viridis", xlabel="digit", ylabel="factor",
        )  # fmt: skip
    if fractions := panels("fractions"):
        figures.heatmaps(
            fractions, out / "intervention.png",
            vmin=0.0, vmax=1.0, annotate=True, cmap="viridis",
            xlabel="colour channel (digit o in channel o)", ylabel="swapped factor",
        )  # fmt: skip
    if tracks := panels("identity"):
        figures.identity_tracks(tracks, out / "identity.png", num_digits)
    curves = {name: results[name]["prediction"]["model"] for name in MODELS
              if has(results[name], "prediction")}  # fmt: skip
    if has(results["trained"], "prediction"):
        curves["copy last frame"] = results["trained"]["prediction"]["copy_last"]
    if curves:
        figures.prediction_curves(curves, out / "prediction.png")
    for name in MODELS:
        folder = out / "generations" / name
        folder.mkdir(parents=True, exist_ok=True)
        for label, videos in {"truth": arrays[name]["truth"], **arrays[name]["images"]}.items():
            save_grid(videos, folder / f"{label}.png")
            if label != "truth":
                save_gif(videos, folder / f"{label}.gif")


def console_summary(metrics: dict, out: Path) -> list[str]:
    """The lines ``dvip evaluate`` prints: the headline numbers beside their floor, the notes
    on the held-out data, and where the report is."""
    lines = []
    t, u = metrics["trained"], metrics["untrained"]
    lines.append(f"evaluation: {out} ({metrics['seconds']:.0f} s)")
    if made(t["mutual_info"]) or made(u["mutual_info"]):
        lines.append(
            f"  MI same / cross (bits): {_pair(t, 'mutual_info', 'same')} / "
            f"{_pair(t, 'mutual_info', 'cross')}   untrained {_pair(u, 'mutual_info', 'same')} / "
            f"{_pair(u, 'mutual_info', 'cross')}"
        )
    else:
        lines.append(f"  MI: {t['mutual_info']['note']}")
    if made(t["bound"]):
        b = t["bound"]
        held_out = metrics["held_out"]
        on = f" (test sequences of seed {held_out['seed']})" if "seed" in held_out else ""
        lines.append(
            f"  test ELBO per frame: {b['elbo_per_frame']:.2f} ± {b['elbo_per_frame_se']:.2f}{on}"
        )
        kl = ", ".join(f"{v:.2f}" for v in b["kl_per_factor_per_frame"])
        lines.append(f"  KL per factor per frame (nats; ~0 = a collapsed factor): {kl}")
        saving = ", ".join(f"{v:.2f}" for v in b["prediction_saving"])
        floor = (
            ", ".join(f"{v:.2f}" for v in u["bound"]["prediction_saving"])
            if made(u["bound"])
            else "n/a"
        )
        lines.append(
            f"  prediction saving per factor, 1 - KL(t>=2)/KL(t=1): {saving}   untrained {floor}"
        )
    score, floor = (m.get("object_score", {"applicable": False}) for m in (t, u))
    if made(score) and score["normalised"] is not None:
        shown = (
            f"{floor['normalised']:.3f}"
            if made(floor) and floor["normalised"] is not None
            else "n/a"
        )
        silent = score.get("silent_factors") or []
        void = f" (void: factor {', '.join(map(str, silent))} moves nothing)" if silent else ""
        lines.append(
            "  object score (normalised compositional contrast; 0 = one factor per pixel): "
            f"{score['normalised']:.3f}{void}   untrained {shown}"
        )
    if made(t["alignment"]):
        lines.append(
            f"  {t['alignment']['targets']} {t['alignment'].get('probe', 'ridge')} probe min "
            f"matched R² / max leakage: {_pair(t, 'alignment', 'min_matched')} / "
            f"{_pair(t, 'alignment', 'max_leakage')}   untrained "
            f"{_pair(u, 'alignment', 'min_matched')} / {_pair(u, 'alignment', 'max_leakage')}"
        )
        lines.append(f"  verdict: {t['alignment']['verdict']} ({t['alignment']['verdict_reason']})")
        if t["intervention"].get("note", "").startswith(SHARED_CHANNEL):
            lines.append(f"  intervention test: {t['intervention']['note']}")
    elif t["alignment"]["note"].startswith(NO_GROUND_TRUTH):
        lines.append(f"  probes, intervention test: {NO_GROUND_TRUTH} (video run)")
    if made(t.get("identity", {"applicable": False})):
        lines.append(f"  identity: {_identity(t)}   untrained {_identity(u)}")
    for note in metrics["held_out"]["notes"]:
        lines.append(f"  note: {note}")
    lines.append(f"  report: {out / 'report.md'}")
    return lines


def _pair(m: dict, part: str, key: str) -> str:
    """``m[part][key]`` to 2 decimals, or n/a when the part was not made."""
    return f"{m[part][key]:.2f}" if made(m[part]) else "n/a"


def _identity(m: dict) -> str:
    """One model's identity swaps per crossing, its crossings and consistent share, or n/a."""
    i = m["identity"]
    if not made(i):
        return "n/a"
    swaps = "n/a" if i["swaps_per_crossing"] is None else f"{i['swaps_per_crossing']:.2f}"
    return (
        f"{swaps} swaps per crossing ({i['crossings']} crossings), "
        f"{i['consistent_share']:.2f} of sequences consistent"
    )
