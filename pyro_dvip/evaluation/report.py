"""``report.md``: every number beside its untrained floor, every figure with how to read it."""

from __future__ import annotations

from pathlib import Path

from .alignment import NO_GROUND_TRUTH, PROBE_MODELS, applicable


def _f(value, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:.{digits}f}"


def _matrix(rows) -> str:
    return "[" + ", ".join("[" + ", ".join(_f(v) for v in row) + "]" for row in rows) + "]"


def _row(label: str, trained: str, untrained: str) -> str:
    return f"| {label} | {trained} | {untrained} |"


def _list(values) -> str:
    return "[" + ", ".join(_f(v) for v in values) + "]"


def _with_interval(value, interval) -> str:
    return f"{_f(value)} [{_f(interval[0])}, {_f(interval[1])}]" if interval else _f(value)


def _coordinate_rows(a: dict) -> dict[str, str]:
    """Each factor's position probe split into x and y per digit (absent from older metrics):
    a factor holding the x of every digit is an axis split, not an object."""
    if "by_coordinate" not in a:
        return {}
    return {
        f"factor {k}: R² on (x, y) per digit": "; ".join(
            f"digit {o} ({_f(digit[0])}, {_f(digit[1])})" for o, digit in enumerate(factor)
        )
        for k, factor in enumerate(a["by_coordinate"]["r2"])
    }


OBJECT_SCORE_ROW = "object score: normalised compositional contrast (0: one factor per pixel)"
OBJECT_SCORE_TEXT = (
    "Object score (no labels needed): the compositional contrast of Brady et al. 2023 "
    "(ICML), from the decoder's Jacobian at {frames} posterior samples of held-out frames, "
    "grouped by {groups}: per output value n and factor k, J_nk = ‖∂mean_n/∂z^k‖; "
    "C_comp = Σ_n Σ_{{k<j}} J_nk J_nj per frame (0 exactly when no pixel is moved by two "
    "factors). The normalised score is 2K/(K−1) · Σ C_comp / Σ_n (Σ_k J_nk)², in [0, 1]: 0 = "
    "every pixel is moved by one factor (factors draw separate things, as objects do), 1 = "
    "every pixel is moved equally by every factor (an untrained decoder is near 1). It says "
    "how the decoder uses the factors, not which object each holds: read it against the "
    "floor, and against the probes where there is ground truth."
)


def summary_rows(m: dict) -> dict[str, str]:
    """The headline numbers of one model's metrics, formatted: label -> value."""
    b, mi, a, iv = m["bound"], m["mutual_info"], m["alignment"], m["intervention"]
    c = m["correlation"]
    rows = {
        "test ELBO per frame (± s.e.)": f"{_f(b['elbo_per_frame'], 1)} ± "
        f"{_f(b['elbo_per_frame_se'], 1)}",
        "test ELBO per sequence": _f(b["elbo_per_sequence"], 1),
        f"IW bound per frame (S={b['iw_samples']})": _f(b["iw_bound_per_frame"], 1),
        "same-factor MI, bits [95% bootstrap]": _with_interval(mi["same"], mi.get("same_interval")),
        "cross-factor MI, bits [95% bootstrap]": _with_interval(
            mi["cross"], mi.get("cross_interval")
        ),
        "mean abs corr, same / cross blocks": f"{_f(c['same_abs_corr'])} / "
        f"{_f(c['cross_abs_corr'])}",
    }
    if "object_score" in m:  # absent from metrics written before it existed
        o = m["object_score"]
        rows[OBJECT_SCORE_ROW] = _f(o["normalised"])
        rows["compositional contrast C_comp per frame (Brady et al. 2023)"] = (
            "n/a" if o["compositional_contrast"] is None else f"{o['compositional_contrast']:.3g}"
        )
    if "kl_per_factor_per_frame" in b:  # absent from metrics written before it existed
        rows["KL per factor per frame, nats (≈0: a collapsed factor)"] = _list(
            b["kl_per_factor_per_frame"]
        )
    if "kl_per_step_per_factor" in b:
        rows["KL per step summed over factors, nats (t = 1..T)"] = ", ".join(
            _f(sum(step), 1) for step in b["kl_per_step_per_factor"]
        )
        rows["prediction saving per factor, 1 − KL(t≥2)/KL(t=1) (≈0: nothing predicted)"] = _list(
            b["prediction_saving"]
        )
    if b.get("active_units") is not None:  # absent from older metrics and for user priors
        rows[f"active units per factor (KL > {b['active_nats']:g} nats per frame)"] = ", ".join(
            str(n) for n in b["active_units"]
        )
    if applicable(a):
        rows.update({
            f"probe R² on {a['targets']} [factor, digit]": _matrix(a["r2"]),
            "probe R² from the whole latent, per digit": _list(a["whole_r2"]),
            **{
                f"probe R² on {name} [factor, digit]; whole latent": (
                    f"{_matrix(part['r2'])}; {_list(part['whole_r2'])}"
                )
                for name, part in a["by_target"].items()
                if name != a["targets"]
            },
            **_coordinate_rows(a),
            "matched R² per matched factor": _list(a["matched"]),
            "leakage per matched factor": _list(a["leakage"]),
            "mean gap matched − leakage": _f(a["mean_gap"]),
            "smallest gap (a dropped or mixed digit shows here)": _f(a["min_gap"]),
            "disentanglement / completeness (DCI-style)": f"{_f(a['disentanglement'])} / "
            f"{_f(a['completeness'])}",
        })  # fmt: skip
    else:
        rows["factor–object probes"] = NO_GROUND_TRUTH
    if applicable(iv):
        rows["intervention: share of change in matched channel"] = _list(iv["matched_share"])
    else:
        rows["intervention test"] = NO_GROUND_TRUTH
    if "prediction" in m:
        p = m["prediction"]["model"]
        rows["prediction PSNR per step (dB)"] = ", ".join(_f(v, 1) for v in p["psnr"])
        rows["prediction SSIM per step"] = ", ".join(_f(v) for v in p["ssim"])
    return rows


FIGURES = [
    ("correlation.png", "Correlation between every unit of z_{t+1} (rows) and of z_t (columns), "
     "posterior samples (Figure 2). Lines mark factor boundaries (for a one-factor model, the "
     "chosen partition, units reordered group by group). Factors that predict themselves show "
     "strong blocks on the diagonal and weak ones off it."),
    ("mutual_info.png", "KSG mutual information I(z_t^i ; z_{t+1}^j) in bits (Table 2): the "
     "diagonal is same-factor, the rest cross-factor. Independent prediction = bright diagonal, "
     "dark elsewhere."),
    ("probe_r2.png", "Held-out probe R² (ridge, or MLP with `--probe mlp`) from each factor to "
     "each digit's position (the headline targets, `--probe-targets`). Aligned factors give one "
     "high entry per row and low leakage elsewhere; a mixed "
     "factor is high across its row; a dropped digit is a low column. Compare with the untrained "
     "panel: only the gap above it counts."),
    ("intervention.png", "Share of the decoded change that lands in each colour channel when "
     "one factor is swapped between two sequences (digit o is drawn in channel o). An object "
     "factor puts almost all of its change in one digit's channel."),
    ("prediction.png", "PSNR and SSIM of the mean of prior rollouts after the context frames, "
     "against copying the last context frame. A model that predicts motion stays above the "
     "copy baseline."),
]  # fmt: skip

IMAGES = [
    ("truth", "the held-out sequences (rows), one column per step."),
    ("reconstructions", "decoded posterior means; should match the truth."),
    ("independent_factor{k}", "Figure 3: every factor held at step 1 except factor {k}, which "
     "follows its posterior. What moves is what factor {k} represents."),
    ("rollout_factor{k}", "factor {k} rolled forward by its own transition, the others held at "
     "step 1: the motion the prior has learned for it."),
    ("prior_samples", "samples of the whole prior p(z_{1:T}), decoded."),
    ("layer_factor{k}", "what factor {k} draws in the reconstructions on its own (a per-factor "
     "decoder): additive with summed sigmoids and composite: the layers add up to the "
     "reconstruction; additive with summed logits: sigmoid of factor {k}'s logits."),
    ("mask_factor{k}", "composite decoder: factor {k}'s mask (white: the factor draws the "
     "pixel); the masks add up to 1 at every pixel."),
]  # fmt: skip


def write_report(out: Path, metrics: dict) -> None:
    """Write ``out/report.md`` from ``metrics`` (as written to metrics.json) and the files
    ``evaluate`` wrote beside it."""
    trained, untrained = metrics["trained"], metrics["untrained"]
    b, a, iv = trained["bound"], trained["alignment"], trained["intervention"]
    held_out = metrics.get("held_out", {"source": "test digits", "notes": []})
    probes = (
        f"probes: {PROBE_MODELS[a.get('probe', 'ridge')]}, {a['protocol']}"
        if applicable(a)
        else f"probes: {a['note']}"
    )
    lines = [
        f"# Evaluation of `{metrics['run_dir']}`",
        "",
        f"{metrics['sequences']} held-out sequences of {b['seq_len']} frames "
        f"({held_out['source']}); MI on {trained['mutual_info']['pairs']} (z_t, z_t+1) pairs, "
        f"KSG k=3, bits; groups: {trained['mutual_info']['protocol']}; {probes}. The untrained "
        "column is a freshly initialised model of the same configuration measured the same "
        "way: read every number against it.",
        "",
    ]
    for note in held_out["notes"]:
        lines += [f"Note: {note}.", ""]
    if not applicable(iv):
        lines += [f"Intervention test: {iv['note']}.", ""]
    if "object_score" in trained:
        o = trained["object_score"]
        lines += [OBJECT_SCORE_TEXT.format(frames=o["frames"], groups=o["groups"]), ""]
    lines += [
        f"Bounds in nats, Gaussian normalising constant included "
        f"({_f(b['log_norm_const_per_frame'], 1)} per frame); ELBO over {b['sequences']} "
        f"sequences, s.e. over {b['particles']} particles. Per sequence = per frame × "
        f"{b['seq_len']}.",
        "",
        "| measurement | trained | untrained floor |",
        "|---|---|---|",
    ]
    floor = summary_rows(untrained)
    lines += [_row(label, value, floor[label]) for label, value in summary_rows(trained).items()]
    lines.append("")
    for name, text in FIGURES:
        if (out / name).exists():
            lines += [f"## {name}", "", text, "", f"![{name}]({name})", ""]
        elif name in ("probe_r2.png", "intervention.png") and not applicable(a):
            lines += [f"## {name}", "", f"Not written: {NO_GROUND_TRUTH}.", ""]
    lines += ["## Generations", "", "Left: trained; right: untrained floor.", ""]
    folder = out / "generations" / "trained"
    for stem, text in IMAGES:
        names = sorted(p.stem for p in folder.glob(stem.replace("{k}", "*") + ".png"))
        for name in names:
            k = name.rsplit("factor", 1)[-1] if "{k}" in stem else ""
            lines += [f"**{name}**: {text.replace('{k}', k)}", ""]
            lines += [
                f"![trained](generations/trained/{name}.png) "
                f"![untrained](generations/untrained/{name}.png)",
                "",
            ]
    (out / "report.md").write_text("\n".join(lines))
