"""Does the label-free object score rank runs like the ground-truth leakage does?

    python examples/object_score_validation.py runs/*/ --out object-score.csv
    python examples/object_score_validation.py runs/a runs/b --eval eval-mlp

Reads RUN/eval/metrics.json (``dvip evaluate`` first; ``--eval`` names another folder) of every
run and writes one CSV row per run: the object score (normalised compositional contrast) of
the trained model and of its untrained floor, the smallest matched R², the largest leakage,
the mean and smallest gaps, and the run's decoder, prior and seed. Then the Spearman rank
correlations of the object score with the largest leakage (positive if the score works: more
pixels moved by two factors, more of a digit read from the wrong factor) and with the smallest
gap (negative if it works), over the runs that have both numbers, all decoders together and
each decoder on its own (a decoder family can set the score's level, so a correlation over
families may only say which decoder a run had): printed, and written as the last rows of the
CSV. Runs without ground truth (video), without an object score (evaluated before it
existed) or with a silent factor (one that moves almost no pixel, which voids the score:
evaluation.md; "unknown" for an evaluation made before that check) are listed and left out of
the correlations.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from scipy.stats import spearmanr

COLUMNS = [
    "run", "decoder", "entangled", "seed", "object_score", "object_score_untrained",
    "min_matched", "max_leakage", "mean_gap", "min_gap", "silent_factors",
]  # fmt: skip
AGAINST = ("max_leakage", "min_gap")  # ground truth the score is ranked against


def record(run: str, metrics: dict) -> dict:
    """One CSV row from a run's metrics.json; None where a number is missing."""
    config, trained = metrics["config"], metrics["trained"]
    alignment = trained["alignment"]
    score = lambda m: m.get("object_score", {}).get("normalised")  # noqa: E731
    score_of_run = trained.get("object_score", {})
    # evaluated before dvip evaluate checked for silent factors: whether the score holds is unknown
    silent = score_of_run.get("silent_factors", ["unknown"] if score_of_run else []) or []
    return {
        "run": run,
        "decoder": config.get("decoder", "paper"),
        "entangled": config["entangled"],
        "seed": config["seed"],
        "object_score": score(trained),
        "object_score_untrained": score(metrics["untrained"]),
        **{k: alignment.get(k) for k in ("min_matched", "max_leakage", "mean_gap", "min_gap")},
        "silent_factors": " ".join(map(str, silent)),
    }


def usable(r: dict) -> bool:
    """A record whose score means something and has ground truth beside it."""
    return (
        r["object_score"] is not None and r["max_leakage"] is not None and not r["silent_factors"]
    )


def rank_correlations(records: list[dict]) -> dict[str, dict]:
    """Spearman's rho (and its p-value) of the object score with each of ``AGAINST``, over the
    records that have both numbers; rho is None for fewer than 3 such records."""
    out = {}
    for name in AGAINST:
        pairs = [(r["object_score"], r[name]) for r in records
                 if usable(r) and r[name] is not None]  # fmt: skip
        if len(pairs) < 3:
            out[name] = {"rho": None, "p": None, "runs": len(pairs)}
            continue
        rho, p = spearmanr(*zip(*pairs))
        out[name] = {"rho": float(rho), "p": float(p), "runs": len(pairs)}
    return out


def correlations_by_decoder(records: list[dict]) -> dict[str, dict[str, dict]]:
    """``rank_correlations`` over all records ("all") and over each decoder's records."""
    out = {"all": rank_correlations(records)}
    for decoder in sorted({r["decoder"] for r in records}):
        out[decoder] = rank_correlations([r for r in records if r["decoder"] == decoder])
    return out


def write_csv(path: Path, records: list[dict], correlations: dict[str, dict[str, dict]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows([r[c] for c in COLUMNS] for r in records)
        w.writerow([])
        w.writerow(["spearman_object_score_vs", "rho", "p", "runs", "decoders"])
        for decoders, by_name in correlations.items():
            for name, c in by_name.items():
                w.writerow([name, c["rho"], c["p"], c["runs"], decoders])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--eval", default="eval", help="evaluation folder inside each run")
    parser.add_argument("--out", type=Path, default=Path("object-score-validation.csv"))
    args = parser.parse_args()
    records = []
    for run in args.runs:
        path = run / args.eval / "metrics.json"
        if not path.exists():
            print(f"skipped {run}: no {args.eval}/metrics.json (run dvip evaluate first)")
            continue
        records.append(record(str(run), json.loads(path.read_text())))
    for r in records:
        if r["silent_factors"] == "unknown":
            print(f"left out of the correlations: {r['run']} (evaluated before the silent-factor"
                  " check: evaluate it again)")  # fmt: skip
        elif r["silent_factors"]:
            print(f"left out of the correlations: {r['run']} (silent factor {r['silent_factors']}:"
                  " score void)")  # fmt: skip
        elif not usable(r):
            print(f"left out of the correlations: {r['run']} (no object score or no ground truth)")
    correlations = correlations_by_decoder(records)
    write_csv(args.out, records, correlations)
    for decoders, by_name in correlations.items():
        for name, c in by_name.items():
            rho = (
                "n/a (fewer than 3 runs)"
                if c["rho"] is None
                else f"{c['rho']:.2f} (p {c['p']:.3g})"
            )
            print(
                f"Spearman rho, object score vs {name}, over {c['runs']} runs ({decoders}): {rho}"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
