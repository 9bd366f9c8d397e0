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
    from pyro_dvip.evaluation.outputs import console_summary

    try:
        metrics = run_evaluation(run_dir, out, samples=samples, seed=seed, **options)
    except (RunError, CheckpointError) as e:
        raise click.ClickException(str(e)) from e
    except ValueError as e:
        raise _error(str(e)) from e
    out = out or run_dir / "eval"
    for line in console_summary(metrics, out):
        click.echo(line)
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
