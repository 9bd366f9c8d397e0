"""What ``evaluate`` writes beside report.md: metrics.json, the CSV tables, the figures and
generations; and the summary ``dvip evaluate`` prints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import figures
from .alignment import NO_GROUND_TRUTH, SHARED_CHANNEL
from .generations import save_gif, save_grid, save_track_gif, save_tracks
from .outcome import MODELS, has, made, plain, value, write_csv
from .scene import DRAWS
from .verdict import UNUSED_NATS

# summary.csv, a row per model: (column, part of the model's metrics, key in it)
SUMMARY = [
    ("elbo_per_frame", "bound", "elbo_per_frame"),
    ("elbo_per_frame_se", "bound", "elbo_per_frame_se"),
    ("iw_bound_per_frame", "bound", "iw_bound_per_frame"),
    ("same_mi", "mutual_info", "same"),
    ("cross_mi", "mutual_info", "cross"),
    ("object_score", "object_score", "normalised"),
    ("min_matched_r2", "alignment", "min_matched"),
    ("max_leakage", "alignment", "max_leakage"),
    ("mean_gap", "alignment", "mean_gap"),
    ("disentanglement", "alignment", "disentanglement"),
    ("completeness", "alignment", "completeness"),
    ("min_intervention_share", "intervention", "min_matched_share"),
    ("swaps_per_crossing", "identity", "swaps_per_crossing"),
    ("identity_consistent_share", "identity", "consistent_share"),
    ("mota", "tracking", "mota"),
    ("idf1", "tracking", "idf1"),
    ("id_switches_per_100", "tracking", "id_switches_per_100"),
]
# The matrices written one entry per line: (file, header, part, key of the matrix)
MATRICES = [
    ("probe_r2.csv", ["model", "factor", "digit", "r2"], "alignment", "r2"),
    ("mutual_info.csv", ["model", "factor_t", "factor_t_plus_1", "mi_bits"], "mutual_info",
     "matrix"),
    ("intervention.csv", ["model", "factor", "channel", "share_of_change"], "intervention",
     "fractions"),
]  # fmt: skip
IDENTITY_COLUMNS = ["threshold_pixels", "sequences", "crossings", "swaps", "swaps_per_crossing",
                    "consistent_share"]  # fmt: skip


def write_metrics(out: Path, metrics: dict) -> None:
    """``out/metrics.json``, an undefined score (NaN) as null."""
    (out / "metrics.json").write_text(json.dumps(plain(metrics), indent=2))


def _csv(value):
    return "n/a" if value is None else value


def write_csvs(out: Path, results: dict) -> None:
    """The tables; a part a model does not have (no ground truth on video, too few pairs, a
    numerical failure) is "n/a" in summary.csv and has no rows in the others; the probe,
    intervention and identity tables are written only when some model has them."""
    write_csv(
        out / "summary.csv",
        ["model", *(column for column, _, _ in SUMMARY)],
        ([name, *(_csv(value(m, part, key)) for _, part, key in SUMMARY)]
         for name, m in results.items()),
    )  # fmt: skip
    for name, header, part, key in MATRICES:
        rows = [
            [model, i, j, v]
            for model, m in results.items()
            if has(m, part)
            for i, row in enumerate(m[part][key])
            for j, v in enumerate(row)
        ]
        if rows:
            write_csv(out / name, header, rows)
    if identity := {name: m["identity"] for name, m in results.items() if has(m, "identity")}:
        write_csv(
            out / "identity.csv",
            ["model", "factors", "digits", *IDENTITY_COLUMNS],
            ([name, " ".join(map(str, i["factors"])), " ".join(map(str, i["digits"])),
              *(_csv(i[c]) for c in IDENTITY_COLUMNS)] for name, i in identity.items()),
        )  # fmt: skip
    write_csv(
        out / "prediction.csv",
        ["model", "step_after_context", "mse", "psnr", "ssim"],
        ([label, h, *values] for label, s in _predictions(results).items()
         for h, values in enumerate(zip(s["mse"], s["psnr"], s["ssim"]), start=1)),
    )  # fmt: skip


def _predictions(results: dict) -> dict:
    """The scores per predicted step of each model that has them, and of copying the last
    context frame of the trained model's sequences (``copy_last``)."""
    scores = {name: m["prediction"]["model"] for name, m in results.items()
              if has(m, "prediction")}  # fmt: skip
    if has(results["trained"], "prediction"):
        scores["copy_last"] = results["trained"]["prediction"]["copy_last"]
    return scores


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
    if curves := _predictions(results):
        labels = {"copy_last": "copy last frame"}
        figures.prediction_curves({labels.get(k, k): v for k, v in curves.items()},
                                  out / "prediction.png")  # fmt: skip
    for name in MODELS:
        folder = out / "generations" / name
        folder.mkdir(parents=True, exist_ok=True)
        for label, videos in {"truth": arrays[name]["truth"], **arrays[name]["images"]}.items():
            save_grid(videos, folder / f"{label}.png")
            if label != "truth":
                save_gif(videos, folder / f"{label}.gif")
        if "tracks" in arrays[name]:
            frames, tracks, used = arrays[name]["tracks"]
            save_tracks(frames, tracks, used, folder / "tracks.png")
            for k in used:
                save_track_gif(frames, tracks, k, folder / f"track_factor{k}.gif")


def console_summary(metrics: dict, out: Path) -> list[str]:
    """The lines ``dvip evaluate`` prints: the headline numbers beside their floor, the notes
    on the held-out data, and where the report is."""
    t, u = metrics["trained"], metrics["untrained"]
    lines = [f"evaluation: {out} ({metrics['seconds']:.0f} s)"]
    if made(t["mutual_info"]) or made(u["mutual_info"]):
        mi = ("mutual_info", "same", "cross")
        lines.append(f"  MI same / cross (bits): {_pair(t, *mi)}   untrained {_pair(u, *mi)}")
    else:
        lines.append(f"  MI: {t['mutual_info']['note']}")
    if made(t["bound"]):
        b, seed = t["bound"], metrics["held_out"].get("seed")
        on = f" (test sequences of seed {seed})" if seed is not None else ""
        floor = _twos(value(u, "bound", "prediction_saving"))
        lines += [
            f"  test ELBO per frame: {b['elbo_per_frame']:.2f} ± {b['elbo_per_frame_se']:.2f}{on}",
            "  KL per factor per frame (nats; ~0 = a collapsed factor): "
            + _twos(b["kl_per_factor_per_frame"]),
            "  prediction saving per factor, 1 - KL(t>=2)/KL(t=1): "
            f"{_twos(b['prediction_saving'])}   untrained {floor}",
        ]
    score, floor = (value(m, "object_score", "normalised") for m in (t, u))
    if score is not None:
        silent = t["object_score"].get("silent_factors") or []
        void = f" (void: factor {', '.join(map(str, silent))} moves nothing)" if silent else ""
        lines.append(
            "  object score (normalised compositional contrast; 0 = one factor per pixel): "
            f"{score:.3f}{void}   untrained " + ("n/a" if floor is None else f"{floor:.3f}")
        )
    a, probes = t["alignment"], ("alignment", "min_matched", "max_leakage")
    if made(a):
        lines += [
            f"  {a['targets']} {a['probe']} probe min matched R² / max leakage: "
            f"{_pair(t, *probes)}   untrained {_pair(u, *probes)}",
        ]
        if t["intervention"].get("note", "").startswith(SHARED_CHANNEL):
            lines.append(f"  intervention test: {t['intervention']['note']}")
    elif a["note"].startswith(NO_GROUND_TRUTH):
        lines.append(f"  probes, intervention test: {NO_GROUND_TRUTH} (video run)")
    if has(t, "identity"):
        lines.append(f"  identity: {_identity(t)}   untrained {_identity(u)}")
    if has(t, "tracking"):
        lines.append(f"  tracking: {_tracking(t)}   untrained {_tracking(u)}")
    lines += [f"  note: {note}" for note in metrics["held_out"]["notes"]]
    if made(a):  # the conclusions last: the ground truth's verdict, then the label-free one
        lines.append(f"  verdict: {a['verdict']} ({a['verdict_reason']})")
    lines += _scene(t, u, out)
    return lines + [f"  report: {out / 'report.md'}"]


def _scene(t: dict, u: dict, out: Path) -> list[str]:
    """The label-free lines: the verdict beside the floor's, the used factors, the pictures."""
    if "scene" not in t:
        return []
    s = t["scene"]
    if not made(s):
        return [f"  label-free verdict: {s['note']}"]
    floor = u["scene"].get("verdict", "n/a") if has(u, "scene") else "n/a"
    used = ", ".join(map(str, s["used"])) or "none"
    lines = [
        f"  used factors: {used} of {s['factors']} (KL per frame >= {UNUSED_NATS:g} nats"
        + (f" and >= {DRAWS:g} of the drawing)" if "per_factor" in s else ")")
    ]
    if "verdict" not in s:  # the paper's decoder: no factor draws on its own
        return lines + [f"  label-free verdict: n/a ({s['tracks']})"]
    lines.append(f"  label-free verdict: {s['verdict']} ({s['reason']})   untrained {floor}")
    pictures = out / "generations" / "trained"
    if (pictures / "tracks.png").exists():
        lines.append(
            f"  pictures: {pictures}/: tracks.png (each used factor's track over the frames), "
            "track_factor*.gif (one per used factor), layer_factor*.png (what each draws)"
        )
    return lines


def _two(number) -> str:
    """A number to 2 decimals (NaN as nan), or n/a for None."""
    return "n/a" if number is None else f"{number:.2f}"


def _twos(numbers) -> str:
    return "n/a" if numbers is None else ", ".join(map(_two, numbers))


def _pair(m: dict, part: str, first: str, second: str) -> str:
    """``m[part][first] / m[part][second]`` to 2 decimals, n/a where the part was not made."""
    return f"{_two(value(m, part, first))} / {_two(value(m, part, second))}"


def _tracking(m: dict) -> str:
    """One model's MOTA, IDF1 and identity switches per 100 object-frames, or n/a."""
    if not has(m, "tracking"):
        return "n/a"
    t = m["tracking"]
    return (
        f"MOTA {t['mota']:.2f}, IDF1 {t['idf1']:.2f}, "
        f"{t['id_switches_per_100']:.2f} identity switches per 100 object-frames"
    )


def _identity(m: dict) -> str:
    """One model's identity swaps per crossing, its crossings and consistent share, or n/a."""
    if not has(m, "identity"):
        return "n/a"
    i = m["identity"]
    return (
        f"{_two(i['swaps_per_crossing'])} swaps per crossing ({i['crossings']} crossings), "
        f"{i['consistent_share']:.2f} of sequences consistent"
    )
