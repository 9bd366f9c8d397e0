"""``dvip evaluate`` and ``dvip compare``."""

from __future__ import annotations

from pathlib import Path

import click

from pyro_dvip.build import RunError
from pyro_dvip.checkpoint import CheckpointError

POSITIVE = click.IntRange(min=1)
RUN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


# The library's option names (EvalOptions fields and evaluate's arguments) -> the CLI's.
OPTIONS = {
    "samples": "--samples", "seed": "--seed", "groups": "--groups", "group_size": "--groups",
    "partitions": "--partitions", "particles": "--particles", "iw_samples": "--iw-samples",
    "bound_sequences": "--bound-sequences", "bootstrap": "--bootstrap",
    "select_pairs": "--select-pairs", "intervention_pairs": "--intervention-pairs",
    "context": "--context", "rollouts": "--rollouts",
    "prediction_sequences": "--prediction-sequences", "examples": "--examples",
    "probe_targets": "--probe-targets", "probe": "--probe", "held_out_seed": "--held-out-seed",
    "device": "--device", "checkpoint": "--checkpoint",
}  # fmt: skip


def _error(message: str) -> click.ClickException:
    """The library's ``'option: problem'`` as a Click error naming the option; any other error
    (a fault inside the evaluation, not a bad value) as one line, exit status 1."""
    field, sep, problem = message.partition(": ")
    if sep and field in OPTIONS:
        return click.BadParameter(problem, param_hint=f"'{OPTIONS[field]}'")
    lines = message.strip().splitlines()
    return click.ClickException(f"evaluation failed: {lines[0] if lines else 'unknown error'}")


def _pair(m: dict, part: str, key: str) -> str:
    """``m[part][key]`` to 2 decimals, or n/a when the part was not made."""
    from pyro_dvip.evaluation.outcome import made

    return f"{m[part][key]:.2f}" if made(m[part]) else "n/a"


def _identity(m: dict) -> str:
    """One model's identity swaps per crossing, its crossings and consistent share, or n/a."""
    from pyro_dvip.evaluation.outcome import made

    i = m["identity"]
    if not made(i):
        return "n/a"
    swaps = "n/a" if i["swaps_per_crossing"] is None else f"{i['swaps_per_crossing']:.2f}"
    return (
        f"{swaps} swaps per crossing ({i['crossings']} crossings), "
        f"{i['consistent_share']:.2f} of sequences consistent"
    )


@click.command()
@click.argument("run_dir", type=RUN_DIR)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder.  [default: RUN_DIR/eval]",
)
@click.option(
    "--samples",
    type=POSITIVE,
    default=5000,
    show_default=True,
    help="(z_t, z_t+1) pairs for the MI and correlation; sets the number of held-out sequences.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every measurement.")
@click.option(
    "--groups",
    "group_size",
    type=POSITIVE,
    help="Units per group for a one-factor (entangled) model.  [default: the factor size of "
    "the matching factored model, config factor_dim]",
)
@click.option(
    "--partitions",
    type=POSITIVE,
    default=20,
    show_default=True,
    help="Random partitions tried for a one-factor model.",
)
@click.option(
    "--particles",
    type=click.IntRange(min=2),
    default=4,
    show_default=True,
    help="Posterior samples per sequence for the ELBO and its s.e.",
)
@click.option(
    "--iw-samples",
    type=POSITIVE,
    default=16,
    show_default=True,
    help="Importance samples of the tighter bound.",
)
@click.option(
    "--bound-sequences",
    type=POSITIVE,
    default=128,
    show_default=True,
    help="Held-out sequences the bounds are computed on.",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Bootstrap resamples for the MI interval; 0 = none.",
)
@click.option(
    "--select-pairs",
    type=POSITIVE,
    default=1000,
    show_default=True,
    help="Pairs on which a one-factor model's best MI partition is chosen.",
)
@click.option(
    "--intervention-pairs",
    type=POSITIVE,
    default=256,
    show_default=True,
    help="Sequence pairs swapped in the intervention test.",
)
@click.option(
    "--context",
    type=POSITIVE,
    help="Frames the prediction is conditioned on.  [default: half the sequence]",
)
@click.option(
    "--rollouts",
    type=POSITIVE,
    default=8,
    show_default=True,
    help="Prior rollouts averaged per predicted sequence.",
)
@click.option(
    "--prediction-sequences",
    type=POSITIVE,
    default=256,
    show_default=True,
    help="Held-out sequences the prediction is scored on.",
)
@click.option(
    "--examples",
    type=POSITIVE,
    default=4,
    show_default=True,
    help="Sequences shown in the image grids and GIFs.",
)
@click.option(
    "--contrast-frames",
    type=POSITIVE,
    default=64,
    show_default=True,
    help="Posterior samples of held-out frames at which the decoder's Jacobian is taken for "
    "the object score (compositional contrast).",
)
@click.option(
    "--probe-targets",
    type=click.Choice(["position", "velocity", "position+velocity"]),
    default="position",
    show_default=True,
    help="What the headline probes decode from each factor (every set is also reported).",
)
@click.option(
    "--probe",
    type=click.Choice(["ridge", "mlp"]),
    default="ridge",
    show_default=True,
    help="What every probe fits: ridge (linear) or an MLP, which also reads a digit coded "
    "non-linearly; judge either only against its own untrained floor.",
)
@click.option(
    "--held-out-seed",
    type=int,
    help="Moving MNIST: measure on the test sequences of a run with this seed instead of this "
    "run's own, so runs of different seeds are measured on the same sequences (their ELBOs "
    "are then comparable).  [default: the run's seed]",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, exists=True),
    help="Evaluate this checkpoint file instead of the run's newest.",
)
@click.pass_context
def evaluate(ctx: click.Context, run_dir: Path, out: Path | None, samples: int, seed: int,
             **options) -> None:  # fmt: skip
    """Measure a trained run and its untrained floor: bound, Figure 2 correlations, Table 2
    mutual information, the label-free object score (compositional contrast), factor-object
    probes, intervention test, identity swaps at crossings, prediction, Figure 3 (and each
    factor's layer and mask for a per-factor decoder).
    A video run (trained with --data) is measured on its test split, without the probes and
    the intervention test (no ground truth); with digits sharing a colour channel
    (--channels 1) the intervention test does not apply.

    A part that fails numerically (e.g. a NaN in the prior) is reported as failed, with its
    reason, in report.md and metrics.json; the other parts are made and the exit status is 1.

    \b
    Examples:
      dvip evaluate runs/demo
      dvip evaluate runs/entangled --groups 10 --out runs/entangled/eval-g10

    Writes metrics.json, CSV tables, PNG figures, GIFs and report.md into RUN_DIR/eval.
    """
    from pyro_dvip.evaluation import evaluate as run_evaluation  # slow imports, only here
    from pyro_dvip.evaluation.alignment import NO_GROUND_TRUTH, SHARED_CHANNEL, applicable
    from pyro_dvip.evaluation.outcome import made

    try:
        metrics = run_evaluation(run_dir, out, samples=samples, seed=seed, **options)
    except (RunError, CheckpointError) as e:
        raise click.ClickException(str(e)) from e
    except ValueError as e:
        raise _error(str(e)) from e
    out = out or run_dir / "eval"
    t, u = metrics["trained"], metrics["untrained"]
    click.echo(f"evaluation: {out} ({metrics['seconds']:.0f} s)")
    if made(t["mutual_info"]) or made(u["mutual_info"]):
        click.echo(
            f"  MI same / cross (bits): {_pair(t, 'mutual_info', 'same')} / "
            f"{_pair(t, 'mutual_info', 'cross')}   untrained {_pair(u, 'mutual_info', 'same')} / "
            f"{_pair(u, 'mutual_info', 'cross')}"
        )
    else:
        click.echo(f"  MI: {t['mutual_info']['note']}")
    if made(t["bound"]):
        b = t["bound"]
        held_out = metrics["held_out"]
        on = f" (test sequences of seed {held_out['seed']})" if "seed" in held_out else ""
        click.echo(
            f"  test ELBO per frame: {b['elbo_per_frame']:.2f} ± {b['elbo_per_frame_se']:.2f}{on}"
        )
        kl = ", ".join(f"{v:.2f}" for v in b["kl_per_factor_per_frame"])
        click.echo(f"  KL per factor per frame (nats; ~0 = a collapsed factor): {kl}")
        saving = ", ".join(f"{v:.2f}" for v in b["prediction_saving"])
        floor = (
            ", ".join(f"{v:.2f}" for v in u["bound"]["prediction_saving"])
            if made(u["bound"])
            else "n/a"
        )
        click.echo(
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
        click.echo(
            "  object score (normalised compositional contrast; 0 = one factor per pixel): "
            f"{score['normalised']:.3f}{void}   untrained {shown}"
        )
    if applicable(t["alignment"]):
        click.echo(
            f"  {t['alignment']['targets']} {t['alignment'].get('probe', 'ridge')} probe min "
            f"matched R² / max leakage: {_pair(t, 'alignment', 'min_matched')} / "
            f"{_pair(t, 'alignment', 'max_leakage')}   untrained "
            f"{_pair(u, 'alignment', 'min_matched')} / {_pair(u, 'alignment', 'max_leakage')}"
        )
        click.echo(f"  verdict: {t['alignment']['verdict']} ({t['alignment']['verdict_reason']})")
        if t["intervention"].get("note", "").startswith(SHARED_CHANNEL):
            click.echo(f"  intervention test: {t['intervention']['note']}")
    elif t["alignment"]["note"].startswith(NO_GROUND_TRUTH):
        click.echo(f"  probes, intervention test: {NO_GROUND_TRUTH} (video run)")
    if made(t.get("identity", {"applicable": False})):
        click.echo(f"  identity: {_identity(t)}   untrained {_identity(u)}")
    for note in metrics["held_out"]["notes"]:
        click.echo(f"  note: {note}")
    click.echo(f"  report: {out / 'report.md'}")
    if metrics["failed"]:
        parts = ", ".join(failure.partition(":")[0] for failure in metrics["failed"])
        click.echo(
            f"Error: evaluation incomplete: {len(metrics['failed'])} part(s) failed "
            f"({parts}); reasons in {out / 'report.md'}",
            err=True,
        )
        ctx.exit(1)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=RUN_DIR)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("compare"),
    show_default=True,
    help="Output folder for compare.md and compare.csv.",
)
def compare(run_dirs: tuple[Path, ...], out: Path) -> None:
    """Table 2 side by side for evaluated runs (run `dvip evaluate` on each first); runs that
    differ only in the seed are grouped as mean ± sd. Each RUN_DIR is a run evaluated into its
    eval/ folder, or the folder an evaluation was written to with `dvip evaluate --out`.

    \b
    Examples:
      dvip compare runs/factored-s0 runs/factored-s1 runs/entangled-s0 --out runs/compare
      dvip compare runs/a/eval-step4000 runs/b/eval-step4000
    """
    from pyro_dvip.evaluation import compare as run_comparison

    try:
        run_comparison(list(run_dirs), out)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"comparison: {out / 'compare.md'}")
