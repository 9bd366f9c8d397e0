"""``dvip evaluate`` and ``dvip compare``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from pyro_dvip.build import RunError
from pyro_dvip.checkpoint import CheckpointError
from pyro_dvip.evaluation import EvalOptions

from .options import RUN_DIR, flag, help_text

RENAMED = {"group_size": "groups"}  # EvalOptions.group_size is set by --groups


def _option(field: dataclasses.Field) -> click.Option:
    """The ``dvip evaluate`` option of an :class:`EvalOptions` field: its help, choices and
    default; the library checks the value."""
    choices = field.metadata["choices"]
    return click.Option(
        [flag(RENAMED.get(field.name, field.name)), field.name], type=str if choices else int,
        default=field.default, metavar="[" + "|".join(choices) + "]" if choices else None,
        help=help_text(field.metadata, field.default),
    )  # fmt: skip


def measurement_options(command: click.Command) -> click.Command:
    """Add an option per :class:`EvalOptions` field after ``--out``."""
    at = [param.name for param in command.params].index("out") + 1
    fields = dataclasses.fields(EvalOptions)
    command.params[at:at] = [_option(field) for field in fields if field.metadata]
    return command


def _error(ctx: click.Context, message: str) -> click.ClickException:
    """The library's ``'option: problem'`` as a Click error naming the option; any other error
    (a fault inside the evaluation, not a bad value) as one line, exit status 1."""
    name, sep, problem = message.partition(": ")
    params = {param.name: param for param in ctx.command.params}
    if sep and name in params:
        return click.BadParameter(problem, ctx=ctx, param=params[name])
    lines = message.strip().splitlines()
    return click.ClickException(f"evaluation failed: {lines[0] if lines else 'unknown error'}")


@measurement_options
@click.command()
@click.argument("run_dir", type=RUN_DIR)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder.  [default: RUN_DIR/eval]",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, exists=True),
    help="Evaluate this checkpoint file instead of the run's newest.",
)
@click.pass_context
def evaluate(ctx: click.Context, run_dir: Path, out: Path | None, **options) -> None:
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
        metrics = run_evaluation(run_dir, out, **options)
    except (RunError, CheckpointError) as e:
        raise click.ClickException(str(e)) from e
    except ValueError as e:
        raise _error(ctx, str(e)) from e
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
