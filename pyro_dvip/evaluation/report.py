"""``report.md``: every number beside its untrained floor, every figure with how to read it."""

from __future__ import annotations

from pathlib import Path

from .alignment import NO_GROUND_TRUTH
from .options import PROBE_MODELS
from .outcome import made
from .scene import DRAWS
from .verdict import UNUSED_NATS


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
    """Each factor's position probe split into x and y per digit: a factor holding the x of
    every digit is an axis split, not an object."""
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


def _object_score_rows(o: dict) -> dict[str, str]:
    return {
        OBJECT_SCORE_ROW: _f(o["normalised"]),
        "compositional contrast C_comp per frame (Brady et al. 2023)": "n/a"
        if o["compositional_contrast"] is None
        else f"{o['compositional_contrast']:.3g}",
        "share of the decoder's output moved by each factor (< 0.05: silent, score void)": (
            _list(o["factor_share"]) if o.get("factor_share") else "n/a"  # none for one group
        ),
    }


def _bound_rows(b: dict) -> dict[str, str]:
    return {
        "test ELBO per frame (± s.e.)": f"{_f(b['elbo_per_frame'], 1)} ± "
        f"{_f(b['elbo_per_frame_se'], 1)}",
        "test ELBO per sequence": _f(b["elbo_per_sequence"], 1),
        f"IW bound per frame (S={b['iw_samples']})": _f(b["iw_bound_per_frame"], 1),
    }


def _mi_rows(mi: dict) -> dict[str, str]:
    return {
        "same-factor MI, bits [95% bootstrap]": _with_interval(mi["same"], mi.get("same_interval")),
        "cross-factor MI, bits [95% bootstrap]": _with_interval(
            mi["cross"], mi.get("cross_interval")
        ),
    }


def _correlation_rows(c: dict) -> dict[str, str]:
    return {
        "mean abs corr, same / cross blocks": f"{_f(c['same_abs_corr'])} / "
        f"{_f(c['cross_abs_corr'])}"
    }


def _kl_rows(b: dict) -> dict[str, str]:
    rows = {
        "KL per factor per frame, nats (≈0: a collapsed factor)": _list(
            b["kl_per_factor_per_frame"]
        ),
        "KL per step summed over factors, nats (t = 1..T)": ", ".join(
            _f(sum(step), 1) for step in b["kl_per_step_per_factor"]
        ),
        "prediction saving per factor, 1 − KL(t≥2)/KL(t=1) (≈0: nothing predicted)": _list(
            b["prediction_saving"]
        ),
    }
    if b["active_units"] is not None:  # None for a user prior
        rows[f"active units per factor (KL > {b['active_nats']:g} nats per frame)"] = ", ".join(
            str(n) for n in b["active_units"]
        )
    return rows


def _alignment_rows(a: dict) -> dict[str, str]:
    words = "objects / axis split / slots / dropped / under-encoded / mixed"
    return {
        f"verdict ({words}; evaluation.md)": f"{a['verdict']}: {a['verdict_reason']}",
        f"unused factors (KL < {UNUSED_NATS:g} nats per frame)": (
            ", ".join(map(str, a["unused"])) or "none"
            if "kl_per_factor_per_frame" in a
            else "n/a (no KL per probed group)"  # a one-factor model's split, a failed bound
        ),
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
        **{
            f"probe R² on the positions of the digits sorted by {axis} [factor, slot]": (
                _matrix(slot["r2"])
            )
            for axis, slot in a.get("by_slot", {}).items()  # none for one digit
        },
        "matched R² per matched factor": _list(a["matched"]),
        "leakage per matched factor": _list(a["leakage"]),
        "mean gap matched − leakage": _f(a["mean_gap"]),
        "smallest gap (a dropped or mixed digit shows here)": _f(a["min_gap"]),
        "disentanglement / completeness (DCI-style)": f"{_f(a['disentanglement'])} / "
        f"{_f(a['completeness'])}",
    }


def _intervention_rows(iv: dict) -> dict[str, str]:
    return {"intervention: share of change in matched channel": _list(iv["matched_share"])}


def _identity_rows(i: dict) -> dict[str, str]:
    followed = ", ".join(f"factor {k}: digit {o}" for k, o in zip(i["factors"], i["digits"]))
    return {
        "identity: factors followed (matched by position)": followed,
        f"identity: crossings (digit centres < {_f(i['threshold_pixels'], 1)} px) in "
        f"{i['sequences']} scored sequences": str(i["crossings"]),
        "identity swaps per crossing (a factor leaves its digit for the other)": _f(
            i["swaps_per_crossing"]
        ),
        "sequences in which every factor follows one digit throughout": _f(i["consistent_share"]),
    }


def _tracking_rows(t: dict) -> dict[str, str]:
    present = ""
    if t["presence_share"] is not None:  # the probes' read-outs are hypotheses at every frame
        share = _f(t["presence_share"])
        present = f"; a factor drawing under {share} of one object's mass is no hypothesis"
    return {
        "tracking: tracks": f"{t['tracks']}, factors {', '.join(map(str, t['factors']))}, "
        f"matched within {_f(t['threshold_pixels'], 1)} px of an object's centre, "
        f"{t['sequences']} sequences{present}",
        "tracking: MOTA": _f(t["mota"]),
        "tracking: IDF1": _f(t["idf1"]),
        "tracking: identity switches (per 100 object-frames)": f"{t['id_switches']} "
        f"({_f(t['id_switches_per_100'])})",
        **_slot_code_row(t),
        **_motion_code_row(t),
        "tracking: misses / false positives (of object-frames / hypothesis-frames)": (
            f"{t['misses']} / {t['false_positives']} (of {t['object_frames']} / "
            f"{t['hypothesis_frames']})"
        ),
    }


def _slot_code_row(t: dict) -> dict[str, str]:
    if "slot_code" not in t:
        return {}
    x, y = t["slot_code"]["x"], t["slot_code"]["y"]
    return {
        "tracking: a perfect slot code's IDF1 / switches per 100 (left-right; top-bottom), "
        "for reference": f"{_f(x['idf1'])} / {_f(x['id_switches_per_100'])}; "
        f"{_f(y['idf1'])} / {_f(y['id_switches_per_100'])}"
    }


def _motion_code_row(t: dict) -> dict[str, str]:
    if "motion_code" not in t:  # runs evaluated before 2026-12-07
        return {}
    near, velocity = t["motion_code"]["nearest"], t["motion_code"]["velocity"]
    return {
        "tracking: what motion alone keeps, IDF1 / switches per 100 (the true centres "
        "associated by position; by position and velocity), for reference": (
            f"{_f(near['idf1'])} / {_f(near['id_switches_per_100'])}; "
            f"{_f(velocity['idf1'])} / {_f(velocity['id_switches_per_100'])}"
        )
    }


def _appearance_rows(a: dict) -> dict[str, str]:
    return {
        "appearance swap: change of a factor's drawing when given another's appearance "
        "(mean / least over pairs; 0: they draw the same)": (
            f"{_f(a['mean_change'])} / {_f(a['min_change'])}"
        ),
    }


def _scene_rows(s: dict) -> dict[str, str]:
    """The label-free record (scene.py): verdict, used factors, and what the verdict reads."""
    words = "objects / not drawn / mixed / shared / still / slots / swaps / no factor used"
    rows = {
        f"label-free verdict ({words}; no labels read; evaluation.md)": (
            f"{s['verdict']}: {s['reason']}" if "verdict" in s else f"n/a: {s['tracks']}"
        ),
        f"label-free: used factors (KL ≥ {UNUSED_NATS:g} nats per frame"
        + (f", ≥ {DRAWS:g} of the drawing)" if "per_factor" in s else ")"): (
            ", ".join(map(str, s["used"])) or "none"
        )
        + f" of {s['factors']}",
        "label-free: share of what moves in the frames that the model does not draw": _f(
            s["unexplained"]
        ),
    }
    if "undrawn" in s:
        rows["label-free: share of what moves in the frames where no factor draws"] = _f(
            s["undrawn"]
        )
    if "per_factor" not in s:
        return rows
    f = s["per_factor"]
    rows.update({
        "label-free: share of the drawing per factor": _list([x["share"] for x in f]),
        **({"label-free: share of the visible change per factor (for reading)": _list(
            [x["visible_share"] for x in f])} if f and f[0].get("visible_share") is not None
           else {}),
        **({"label-free: gate per factor (--factor-gates)": _list([x["gate"] for x in f])}
           if f and f[0].get("gate") is not None else {}),
        "label-free: share of each factor's drawing in its largest region": _list(
            [x["one_region"] for x in f]
        ),
        "label-free: radius per factor (px)": _list([x["radius"] for x in f]),
        "label-free: track step per factor (px per frame)": _list([x["step"] for x in f]),
        "label-free: shared pixels per pair of used factors": "; ".join(
            f"{i}–{j}: {_f(p['shared'])}" for (i, j), p in ((p["factors"], p) for p in s["pairs"])
        ) or "n/a (fewer than two used factors)",
        "label-free: meetings at which the tracks go through each other": (
            f"{sum(p['passed'] for p in s['pairs'])} of {sum(p['meetings'] for p in s['pairs'])}"
        ),
    })  # fmt: skip
    return rows


def _prediction_rows(p: dict) -> dict[str, str]:
    return {
        "prediction PSNR per step (dB)": ", ".join(_f(v, 1) for v in p["model"]["psnr"]),
        "prediction SSIM per step": ", ".join(_f(v) for v in p["model"]["ssim"]),
    }


# The report's table, in order: (part of the metrics, its rows, the row naming a part that was
# not made; None: the part's record is shown once, by an earlier entry).
SECTIONS = [
    ("bound", _bound_rows, "bound"),
    ("mutual_info", _mi_rows, "mutual information"),
    ("correlation", _correlation_rows, "correlation"),
    ("object_score", _object_score_rows, "object score"),
    ("bound", _kl_rows, None),
    ("scene", _scene_rows, "label-free verdict"),
    ("alignment", _alignment_rows, "factor–object probes"),
    ("intervention", _intervention_rows, "intervention test"),
    ("identity", _identity_rows, "identity across crossings"),
    ("tracking", _tracking_rows, "tracking (MOTA, IDF1)"),
    ("appearance_swap", _appearance_rows, "appearance swap"),
    ("prediction", _prediction_rows, "prediction"),
]


def _not_made(m: dict, part: str) -> str | None:
    """Why one model's metrics lack ``part`` (its record's note), or None when they hold it;
    "not measured" where the part is absent (the object score, when the posterior failed)."""
    if part not in m:
        return "not measured"
    if made(m[part]):
        return None
    note = m[part]["note"]
    return NO_GROUND_TRUTH if note.startswith(NO_GROUND_TRUTH) else note


def _table_rows(trained: dict, untrained: dict) -> list[str]:
    """The rows of the trained model beside its floor; a part only one of them has shows the
    other's reason in its first row."""
    lines = []
    for part, make_rows, title in SECTIONS:
        why = {"t": _not_made(trained, part), "u": _not_made(untrained, part)}
        rows = {k: make_rows(m[part]) if why[k] is None else None
                for k, m in (("t", trained), ("u", untrained))}  # fmt: skip
        if rows["t"] is None and rows["u"] is None:
            if title is not None:
                lines.append(_row(title, why["t"], why["u"]))
            continue
        labels = list(dict.fromkeys([*(rows["t"] or {}), *(rows["u"] or {})]))
        for i, label in enumerate(labels):
            cells = [
                rows[k].get(label, "n/a") if rows[k] is not None else why[k] if i == 0 else "—"
                for k in ("t", "u")
            ]
            lines.append(_row(label, *cells))
    return lines


# The figures, in order: (file, the part of the metrics it draws, how to read it)
FIGURES = [
    ("correlation.png", "correlation", "Correlation between every unit of z_{t+1} (rows) and of "
     "z_t (columns), posterior samples (Figure 2). Lines mark factor boundaries (for a one-factor "
     "model, the chosen partition, units reordered group by group). Factors that predict "
     "themselves show strong blocks on the diagonal and weak ones off it."),
    ("mutual_info.png", "mutual_info", "KSG mutual information I(z_t^i ; z_{t+1}^j) in bits "
     "(Table 2): the diagonal is same-factor, the rest cross-factor. Independent prediction = "
     "bright diagonal, dark elsewhere."),
    ("probe_r2.png", "alignment", "Held-out probe R² (ridge, or MLP with `--probe mlp`) from each "
     "factor to each digit's position (the headline targets, `--probe-targets`). Aligned factors "
     "give one high entry per row and low leakage elsewhere; a mixed factor is high across its "
     "row; a dropped digit is a low column. Compare with the untrained panel: only the gap above "
     "it counts."),
    ("intervention.png", "intervention", "Share of the decoded change that lands in each colour "
     "channel when one factor is swapped between two sequences (digit o is drawn in channel o). "
     "An object factor puts almost all of its change in one digit's channel."),
    ("identity.png", "identity", "Which digit each factor matched by position follows (colour), "
     "in the first scored sequences, one row per sequence and factor, one column per step: the "
     "digit nearest the factor's probe prediction. Dots mark steps at which two digits are closer "
     "than the crossing threshold. A factor that keeps its digit is one colour along its row "
     "outside the dots; a colour change across dots is an identity swap."),
    ("prediction.png", "prediction", "PSNR and SSIM of the mean of prior rollouts after the "
     "context frames, against copying the last context frame. A model that predicts motion stays "
     "above the copy baseline."),
]  # fmt: skip

# The generations, in order: (file stem, its record in metrics' "generations", what it shows)
IMAGES = [
    ("truth", None, "the held-out sequences (rows), one column per step."),
    ("tracks", "scene", "each used factor's track (the centre of mass of what it draws) over "
     "the held-out frames, in the factor's colour: its path so far and a circle where it is; "
     "track_factorK.gif plays factor K's track. No labels are read."),
    ("reconstructions", "reconstructions", "decoded posterior means; should match the truth."),
    ("independent_factor{k}", "independent_factor", "Figure 3: every factor held at step 1 except "
     "factor {k}, which follows its posterior. What moves is what factor {k} represents."),
    ("rollout_factor{k}", "rollout_factor", "factor {k} rolled forward by its own transition, the "
     "others held at step 1: the motion the prior has learned for it."),
    ("prior_samples", "prior_samples", "samples of the whole prior p(z_{1:T}), decoded."),
    ("layer_factor{k}", "layers", "what factor {k} draws in the reconstructions on its own (a "
     "per-factor decoder): additive with summed sigmoids and composite: the layers add up to the "
     "reconstruction; additive with summed logits: sigmoid of factor {k}'s logits."),
    ("mask_factor{k}", "layers", "composite decoder: factor {k}'s mask (white: the factor draws "
     "the pixel); the masks add up to 1 at every pixel."),
]  # fmt: skip


def write_report(out: Path, metrics: dict) -> None:
    """Write ``out/report.md`` from ``metrics`` (as written to metrics.json) and the files
    ``evaluate`` wrote beside it. Parts that failed are listed first, with their reasons."""
    trained, untrained = metrics["trained"], metrics["untrained"]
    a, iv = trained["alignment"], trained["intervention"]
    seq_len = metrics["config"]["seq_len"]
    held_out = metrics["held_out"]
    probes = (
        f"probes: {PROBE_MODELS[a['probe']]}, {a['protocol']}"
        if made(a)
        else f"probes: {a['note']}"
    )
    mi = trained["mutual_info"]
    mi_text = (
        f"MI on {mi['pairs']} (z_t, z_t+1) pairs, KSG k=3, bits; groups: {mi['protocol']}"
        if made(mi)
        else f"MI {mi['note']}"
    )
    lines = [
        f"# Evaluation of `{metrics['run_dir']}`",
        "",
        f"{metrics['sequences']} held-out sequences of {seq_len} frames "
        f"({held_out['source']}); {mi_text}; {probes}. The untrained "
        "column is a freshly initialised model of the same configuration measured the same "
        "way: read every number against it.",
        "",
    ]
    if failed := metrics["failed"]:
        lines += [f"**Incomplete: {len(failed)} part(s) failed**, the rest were made:", ""]
        lines += [f"- {failure}" for failure in failed] + [""]
    for note in held_out["notes"]:
        lines += [f"Note: {note}.", ""]
    if not made(iv):
        lines += [f"Intervention test: {iv['note']}.", ""]
    o = trained.get("object_score")
    if o is not None and made(o):
        lines += [OBJECT_SCORE_TEXT.format(frames=o["frames"], groups=o["groups"]), ""]
    b = next((m["bound"] for m in (trained, untrained) if made(m["bound"])), None)
    if b is not None:
        lines += [
            f"Bounds in nats, Gaussian normalising constant included "
            f"({_f(b['log_norm_const_per_frame'], 1)} per frame); ELBO over {b['sequences']} "
            f"sequences, s.e. over {b['particles']} particles. Per sequence = per frame × "
            f"{seq_len}.",
            "",
        ]
    lines += ["| measurement | trained | untrained floor |", "|---|---|---|"]
    lines += _table_rows(trained, untrained)
    lines.append("")
    for name, part, text in FIGURES:
        if (out / name).exists():
            lines += [f"## {name}", "", text, "", f"![{name}]({name})", ""]
            continue
        why = _not_made(trained, part)
        if why is not None and why != "not measured":
            lines += [f"## {name}", "", f"Not written: {why}.", ""]
    lines += ["## Generations", "", "Left: trained; right: untrained floor.", ""]
    for stem, part, text in IMAGES:
        names = sorted(
            {p.stem for model in ("trained", "untrained")
             for p in (out / "generations" / model).glob(stem.replace("{k}", "*") + ".png")}
        )  # fmt: skip
        for name in names:
            k = name.rsplit("factor", 1)[-1] if "{k}" in stem else ""
            lines += [f"**{name}**: {text.replace('{k}', k)}", ""]
            lines += [" ".join(_image(out, model, name) for model in ("trained", "untrained")), ""]
        for model, m in (("trained", trained), ("untrained", untrained)):
            record = m["generations"].get(part)
            if record is not None:
                lines += [f"**{part}** ({model}): {record['note']}.", ""]
    (out / "report.md").write_text("\n".join(lines))


def _image(out: Path, model: str, name: str) -> str:
    path = f"generations/{model}/{name}.png"
    return f"![{model}]({path})" if (out / path).exists() else f"({model}: not made)"
