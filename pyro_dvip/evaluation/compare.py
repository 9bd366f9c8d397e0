"""``compare``: several evaluated runs side by side, in the layout of the paper's Table 2.

Runs whose configurations differ only in the seed (and in where or how verbosely they ran)
form one group, reported as mean ± sd over its runs (one run proves little: VAE results
vary with the seed). The paper's published Moving MNIST rows are a reference line; they used
64x64 frames, sequences of 5 and 1,000 MI pairs, so only like-for-like runs compare directly.
Video runs have no ground truth: their alignment and tracking columns read "n/a", as does the
intervention column of a run whose digits share a colour channel (``--channels 1``).

ELBOs are comparable only on the same sequences: each Moving MNIST run is evaluated on the
test sequences of its own seed unless ``dvip evaluate --held-out-seed`` chose others, and
seeds' test sets alone move the ELBO by about a nat per frame. ``compare.md`` says which set
each run was measured on, and warns when they differ (:func:`held_out_sets`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..config import RETIRED, SAVED_BEFORE_FIELD, TrainConfig
from .outcome import made, value, write_csv

# Fields that do not change what a run is: runs differing only in these are replicates.
REPLICATE_FIELDS = {
    "seed", "device", "log_every", "checkpoint_every", "keep_checkpoints", "preset", "cache_dir",
}  # fmt: skip

PAPER_ROWS = [
    ("paper: moving MNIST, two factors (2×20)", 4.61, 0.75, -2902),
    ("paper: moving MNIST, entangled (1×40)", 4.66, 2.61, -2896),
]


# Each column's number of one model's metrics (``outcome.value``), None ("n/a") where the part
# was not made (a video run has no ground truth to probe, a short test split too few pairs for
# the MI, a part can fail) or the metrics were written before the number existed.
COLUMNS = [
    ("same MI (bits)", lambda m: value(m, "mutual_info", "same")),
    ("cross MI (bits)", lambda m: value(m, "mutual_info", "cross")),
    ("ELBO / frame", lambda m: value(m, "bound", "elbo_per_frame")),
    ("IW bound / frame", lambda m: value(m, "bound", "iw_bound_per_frame")),
    # NaN entries are collapsed factors
    ("prediction saving", lambda m: _nanmean(value(m, "bound", "prediction_saving"))),
    ("object score", lambda m: value(m, "object_score", "normalised")),  # label-free
    ("min matched R²", lambda m: value(m, "alignment", "min_matched")),
    ("max leakage", lambda m: value(m, "alignment", "max_leakage")),
    ("mean gap", lambda m: value(m, "alignment", "mean_gap")),
    ("min gap", lambda m: value(m, "alignment", "min_gap")),
    ("intervention share", lambda m: value(m, "intervention", "min_matched_share")),
    ("MOTA", lambda m: value(m, "tracking", "mota")),
    ("IDF1", lambda m: value(m, "tracking", "idf1")),
    ("ID switches / 100", lambda m: value(m, "tracking", "id_switches_per_100")),
]
FIGURES = {"correlation.png": "correlation", "probe_r2.png": "alignment",
           "intervention.png": "intervention"}  # fmt: skip


def group_label(config: dict) -> str:
    """A short name for a configuration: factors × size, and the settings that tell runs apart."""
    model = (
        f"entangled 1×{config['factors'] * config['factor_dim']}"
        if config["entangled"]
        else f"{config['factors']}×{config['factor_dim']}"
    )
    data = (
        f"video {config['data']} at {config['fps']:g} fps"
        if config.get("data")
        else f"speed {config['digit_speed']}"
        + (f", {config['arena']} arena" if config.get("arena", "box") != "box" else "")
    )
    if config.get("scene", "digits") == "discs":
        data = f"discs ({config['disc_colours']}), {data}"
    elif not config.get("data") and config.get("channels", 3) == 1:
        data = f"one channel, {data}"
    if config.get("decoder", "paper") != "paper":
        model += f", {config['decoder']} decoder"
        if config.get("background", "none") != "none":
            model += f", {config['background']} background"
    if config.get("encoder", "paper") != "paper":
        model += f", {config['encoder']} encoder"
    return (
        f"{model}, {config['image_size']}px, obs var {config['obs_var']}, {data}, "
        f"{config['seq_len']} frames, {config['steps']} steps"
    )


def _nanmean(values: list | None) -> float | None:
    finite = [v for v in values or [] if v == v]
    return float(np.mean(finite)) if finite else None


def held_out_sets(evaluations: dict[Path, dict]) -> dict[str, list[Path]]:
    """Which held-out sequences each run was measured on: description -> run directories."""
    sets: dict[str, list[Path]] = {}
    for run_dir, metrics in evaluations.items():
        held_out = metrics.get("held_out", {})
        if "seed" in held_out:
            name = f"Moving MNIST test sequences of seed {held_out['seed']}"
        else:
            name = held_out.get("source", "unrecorded (evaluated before the set was recorded)")
        sets.setdefault(name, []).append(run_dir)
    return sets


def _held_out_lines(evaluations: dict[Path, dict]) -> list[str]:
    sets = held_out_sets(evaluations)
    if len(sets) == 1:
        return [f"All runs were measured on the same held-out set: {next(iter(sets))}.", ""]
    lines = [
        "**The runs were measured on different held-out sets**, so their ELBO and IW bound "
        "differ by the sequences as well as by the models (about 1 nat per frame between two "
        "seeds' test sets, docs/results.md). For a common set, evaluate every Moving MNIST run "
        "with `dvip evaluate RUN --held-out-seed N` and compare again.",
        "",
    ]
    lines += [f"- {name}: " + ", ".join(f"`{r}`" for r in dirs) for name, dirs in sets.items()]
    return lines + [""]


def _cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def evaluation_folder(path: Path) -> Path:
    """The folder holding an evaluation's metrics.json: ``path`` itself (what ``dvip evaluate
    --out`` wrote), or a run directory's default ``eval/``.

    Raises:
        FileNotFoundError: one line, when neither holds a metrics.json.
    """
    for folder in (path, path / "eval"):
        if (folder / "metrics.json").is_file():
            return folder
    raise FileNotFoundError(
        f"{path}: no metrics.json in it or in {path / 'eval'}; pass a run evaluated with "
        f"`dvip evaluate {path}` or the folder given to `dvip evaluate --out`"
    )


def common_probe(evaluations: dict[Path, dict]) -> str:
    """The probe every run was measured with (``dvip evaluate --probe``; metrics written before
    the option existed used ridge). Raises ValueError when the runs differ: their R² are on
    different scales, with different floors."""
    by_probe: dict[str, list[str]] = {}
    for run_dir, metrics in evaluations.items():
        alignment = metrics["trained"]["alignment"]
        if made(alignment):
            by_probe.setdefault(alignment.get("probe", "ridge"), []).append(str(run_dir))
    if len(by_probe) > 1:
        runs = "; ".join(f"{probe}: {', '.join(dirs)}" for probe, dirs in by_probe.items())
        raise ValueError(
            f"compare: runs were probed with different probes ({runs}); evaluate them all with "
            "the same `dvip evaluate --probe`"
        )
    return next(iter(by_probe), "ridge")


def _settings(config: dict) -> dict:
    """A run's configuration with the fields added since it ran filled in as it trained (so a
    run from before ``scene`` existed groups with one on the digits), and retired options at
    their neutral value left out (so such a run groups with one made since)."""
    defaults = {**json.loads(TrainConfig().to_json()), **SAVED_BEFORE_FIELD}
    return {
        k: v for k, v in {**defaults, **config}.items()
        if k not in REPLICATE_FIELDS and not (k in RETIRED and v == RETIRED[k][0](config))
    }  # fmt: skip


def group_runs(evaluations: dict[Path, dict]) -> dict[str, list[Path]]:
    """Run directories grouped by configuration, ignoring ``REPLICATE_FIELDS``. Groups whose
    short labels coincide are told apart by the settings in which they differ."""
    groups: dict[tuple, list[Path]] = {}
    settings: dict[tuple, dict] = {}
    for run_dir, metrics in evaluations.items():
        config = _settings(metrics["config"])
        key = tuple(sorted((k, json.dumps(v)) for k, v in config.items()))
        groups.setdefault(key, []).append(run_dir)
        settings[key] = config
    by_label: dict[str, list[tuple]] = {}
    for key, dirs in groups.items():
        by_label.setdefault(group_label(evaluations[dirs[0]]["config"]), []).append(key)
    labelled = {}
    for label, keys in by_label.items():
        for key in keys:
            differing = sorted(
                name
                for name, value in settings[key].items()
                if any(settings[other].get(name) != value for other in keys if other != key)
            )
            extra = ", ".join(f"{name} {json.dumps(settings[key][name])}" for name in differing)
            labelled[f"{label}, {extra}" if extra else label] = groups[key]
    return labelled


def compare(run_dirs: list[str | Path], out: str | Path) -> dict:
    """Write ``compare.md`` and ``compare.csv`` into ``out`` for evaluated runs; return the
    table as {row label: {column: cell}}. Each path is a run directory evaluated into its
    ``eval/``, or an evaluation folder (``dvip evaluate RUN --out FOLDER``)."""
    run_dirs = [Path(r) for r in run_dirs]
    folders = {r: evaluation_folder(r) for r in run_dirs}
    evaluations = {r: json.loads((folders[r] / "metrics.json").read_text()) for r in run_dirs}
    probe = common_probe(evaluations)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    table: dict[str, dict[str, str]] = {}
    for label, dirs in group_runs(evaluations).items():
        runs = f"{label} ({len(dirs)} run{'s' if len(dirs) > 1 else ''})"
        for model, name in (("trained", runs), ("untrained", f"  untrained floor of {label}")):
            table[name] = {
                column: _cell([read(evaluations[d][model]) for d in dirs])
                for column, read in COLUMNS
            }
    columns = [column for column, _ in COLUMNS]
    for label, same, cross, elbo in PAPER_ROWS:
        table[label] = {**dict.fromkeys(columns, ""), "same MI (bits)": f"{same:.2f}",
                        "cross MI (bits)": f"{cross:.2f}", "ELBO / frame": f"{elbo}"}  # fmt: skip
    rows = [[name.strip(), *(cells[c] for c in columns)] for name, cells in table.items()]
    write_csv(out / "compare.csv", ["model", *columns], rows)

    lines = [
        "# Comparison (Table 2 layout, plus alignment)",
        "",
        "Mean ± sd over runs that differ only in the seed. MI: KSG k=3 in bits on posterior "
        "samples (see each run's report for the pair count and the grouping of one-factor "
        "models). ELBO and IW bound: nats per frame, Gaussian normalising constant included. "
        f"Alignment: held-out {probe} probes (min matched R², max leakage, mean and min gap "
        "matched − leakage) and the intervention test (smallest share of a matched factor's "
        "change in its digit's channel). Tracking: each factor's track against the objects' "
        "centres (what it draws, or its probe's read-out for the paper's decoder), scored by "
        "py-motmetrics: MOTA, IDF1 and identity switches per 100 object-frames "
        "(docs/evaluation.md). n/a: not applicable, the run is on real video, which "
        "has no ground truth (object positions, a colour channel per object) for the alignment "
        "and tracking columns, or, in the intervention column only, its objects share a colour "
        "channel. "
        "Prediction saving: 1 − KL(t≥2)/KL(t=1), the share of a frame's KL that the "
        "factors' own transitions remove, averaged over factors (≈0: nothing predicted). "
        "The paper's rows are Moving MNIST, 64×64, sequences of 5, 1,000 MI pairs.",
        "",
        *_held_out_lines(evaluations),
        "| " + " | ".join(["model", *columns]) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    lines += ["", "## Figures, run by run", ""]
    for figure, key in FIGURES.items():
        lines += [f"### {figure}", ""]
        for r in run_dirs:
            measured = evaluations[r]["trained"][key]
            if made(measured):
                path = os.path.relpath(folders[r] / figure, out)
                lines += [f"`{r}`", "", f"![{r}]({path})", ""]
            else:
                lines += [f"`{r}`: {measured['note']}", ""]
    (out / "compare.md").write_text("\n".join(lines))
    return table
