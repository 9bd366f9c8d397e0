"""``dvip train`` and ``dvip presets``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from pyro_dvip.build import RunError, import_transition
from pyro_dvip.checkpoint import CheckpointError
from pyro_dvip.config import PRESETS, RETIRED, make_config
from pyro_dvip.train import TrainingInterrupted
from pyro_dvip.train import train as run_training

from .options import POSITIVE, config_options, flag, given, off_switch, option_error


@config_options()
@click.command()
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    help="Start from a named set of options; explicit options override it.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory.  [default: runs/<date>-<time>]",
)
@click.option(
    "--resume", is_flag=True, help="Continue the run in --out from its newest valid checkpoint."
)
@click.option(
    "--until",
    type=POSITIVE,
    metavar="STEP",
    help="Stop after this step (with a checkpoint) instead of --steps; the learning-rate and "
    "KL schedules still span --steps, and --resume continues exactly (e.g. to look at runs "
    "part-way before spending the rest of their steps).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--nproc",
    type=POSITIVE,
    default=1,
    show_default=True,
    help="Processes (one per GPU, or CPU processes with gloo) launched through torchrun; "
    "--batch-size is the global batch. For several nodes run torchrun yourself "
    "(docs/scaling.md).",
)
@click.pass_context
def train(ctx: click.Context, preset, out, resume, until, quiet, nproc, **options) -> None:
    """Train a DVIP model on colour Moving MNIST or occluding discs (built in, offline), or
    on your video.

    \b
    Examples:
      dvip train --preset cpu-demo            # a few minutes on a laptop CPU
      dvip train --factors 8                  # paper defaults, 8 factors
      dvip train --preset paper-mnist-entangled --out runs/entangled
      dvip train --out runs/demo --resume --steps 3000
      dvip train --preset cpu-objects --out runs/objects   # objects, ~7 min on 2 cores
      dvip train --preset cpu-objects-paper --until 4000 --out runs/a   # stop part-way
      dvip train --scene discs --preset cpu-objects --decoder composite --out runs/discs
      dvip train --data ~/videos --preset paper-video --out runs/street

    Writes config.json, metrics.csv, TensorBoard events and checkpoints into the run directory.
    """
    if resume and out is None:
        raise click.UsageError("--resume needs --out RUN_DIR, the run to continue")
    explicit = given(ctx, options) - RETIRED.keys()  # accepted only at no effect
    try:  # on --resume, checked once merged with the saved run's configuration
        config = make_config(preset, validate=not resume, **options)
        if config.transition is not None:
            import_transition(config.transition)
    except ValueError as e:
        raise option_error(str(e)) from e
    if out is None:
        out = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    if nproc > 1:
        if config.batch_size % nproc:
            raise click.BadParameter(
                f"--batch-size {config.batch_size} does not split over {nproc} processes",
                param_hint="'--nproc'",
            )
        ctx.exit(launch_torchrun(ctx, nproc, preset, out, resume, until, quiet, explicit, options))
    try:
        result = run_training(
            config, out, resume=resume, explicit=explicit, progress=not quiet, until=until
        )
    except TrainingInterrupted as e:
        click.echo(f"Interrupted: {e}", err=True)
        ctx.exit(e.exit_code)
    except (RunError, CheckpointError) as e:
        raise click.ClickException(str(e)) from e
    except ValueError as e:
        raise option_error(str(e)) from e
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 reports
    last = next((row for row in reversed(result.metrics) if "elbo" in row), None)
    test = next((row for row in reversed(result.metrics) if "test_elbo" in row), None)
    click.echo(f"run directory: {result.run_dir}")
    if result.resumed_from is not None:
        click.echo(f"  resumed from {result.resumed_from}")
    if last is not None:
        click.echo(f"  step {last['step']}: train ELBO per frame {last['elbo']:.1f}")
    if test is not None:
        click.echo(f"  step {test['step']}: test ELBO per frame {test['test_elbo']:.1f}")
    if result.step < result.total_steps:
        click.echo(
            f"  stopped at step {result.step} of {result.total_steps} (--until); continue with "
            f"--out {result.run_dir} --resume"
        )
    for name in ("config.json", "metrics.csv", "checkpoints/", "tensorboard/"):
        click.echo(f"  {result.run_dir / name}")


def launch_torchrun(ctx, nproc, preset, out, resume, until, quiet, explicit, options) -> int:
    """Run this same command in ``nproc`` processes under torchrun; returns its exit status."""
    args = ["--out", str(out)]
    if preset is not None:
        args += ["--preset", preset]
    for name in sorted(explicit):
        value = options[name]
        if isinstance(value, bool):  # the field's own switches, e.g. --entangled/--factored
            args.append(flag(name) if value else off_switch(name))
        else:
            args += [flag(name), str(value)]
    args += ["--resume"] * resume + ["--quiet"] * quiet
    args += ["--until", str(until)] if until is not None else []
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "dvip_cli", "train", *args,
    ]  # fmt: skip
    click.echo("launching: " + " ".join(command), err=True)
    return subprocess.call(command)


@click.command()
@click.argument("name", required=False, type=click.Choice(sorted(PRESETS)))
def presets(name: str | None) -> None:
    """List the presets, or print one preset's resolved configuration as JSON."""
    if name is None:
        for preset, values in PRESETS.items():
            click.echo(f"{preset}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        return
    click.echo(json.dumps(json.loads(make_config(name).to_json()), indent=2))
