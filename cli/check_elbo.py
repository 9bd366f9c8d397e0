"""``dvip check-elbo``: the ELBO Pyro optimises against Appendix B written by hand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import pyro
import torch

from pyro_dvip.build import RunError, build_model, load, make_data, resolve_device
from pyro_dvip.checkpoint import CheckpointError
from pyro_dvip.config import DATA, MODEL, PRESETS, TrainConfig, make_config
from pyro_dvip.elbo_check import DERIVATIONS
from pyro_dvip.elbo_check import check_elbo as run_check
from pyro_dvip.evaluation.outcome import plain

from .options import POSITIVE, RUN_DIR, config_options, given, option_error, shown

DTYPES = {"float64": torch.float64, "float32": torch.float32}
FILE = click.Path(dir_okay=False, path_type=Path)


@config_options((MODEL, DATA), also=("device",))
@click.command("check-elbo")
@click.argument("run_dir", required=False, type=RUN_DIR)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    help="Without RUN_DIR: start the fresh model from a named set of options.",
)
@shown(
    "--particles",
    type=click.IntRange(min=2),
    default=100,
    help="Posterior samples for Trace_ELBO and for the hand-written mean.",
)
@shown("--batch-size", type=POSITIVE, default=16, help="Held-out test sequences to check on.")
@click.option("--seq-len", type=POSITIVE, help="Frames per sequence.  [default: the run's, else 5]")
@shown(
    "--derivation",
    type=click.Choice(list(DERIVATIONS)),
    default="paper",
    help="The hand-written bound: the paper's, or a deliberately wrong variant the check "
    "must reject.",
)
@shown(
    "--dtype",
    type=click.Choice(list(DTYPES)),
    default="float64",
    help="Precision of the model copy the check runs in.",
)
@shown(
    "--seed",
    type=int,
    default=0,
    help="Seed of the posterior noise; without RUN_DIR also of the fresh model and data.",
)
@click.option("--json", "json_path", type=FILE, help="Also write the report as JSON to this file.")
@click.pass_context
def check_elbo(
    ctx: click.Context,
    run_dir,
    particles,
    batch_size,
    seq_len,
    derivation,
    dtype,
    seed,
    json_path,
    device,
    **model_options,
) -> None:
    """Check the ELBO Pyro optimises against the paper's Appendix B written by hand.

    Checks a trained run (RUN_DIR) or, without it, a freshly initialised model built from the
    same options as `dvip train`, on a batch of held-out Moving MNIST (or disc) sequences.
    Prints the estimates, the checks (relative differences on one shared posterior sample, a z-score
    between Monte Carlo means), the KL per step and factor, and whether the prior keeps
    factors independent (a coupled prior is named, not failed). Exits with status 1 when a
    check fails.

    \b
    Examples:
      dvip check-elbo runs/demo --particles 200
      dvip check-elbo --preset cpu-demo --json check.json
      dvip check-elbo --factors 2 --factor-dim 3 --image-size 16 --width 4 --derivation drop-kl-t1
    """
    fresh = sorted(given(ctx, model_options))
    try:
        torch_device = resolve_device(device or "auto")
        if run_dir is not None:
            if fresh:
                flag = "--" + fresh[0].replace("_", "-")
                raise click.UsageError(
                    f"{flag} describes a fresh model; RUN_DIR's model comes from its config.json"
                )
            dvip = load(run_dir, device=str(torch_device))
            config = TrainConfig.load(run_dir / "config.json")
            source = f"{run_dir} (newest checkpoint)"
        else:
            config = make_config(model_options.pop("preset"), seed=seed, **model_options)
            pyro.set_rng_seed(seed)
            dvip = build_model(config).to(torch_device)
            source = f"freshly initialised (seed {seed})"
        seq_len = seq_len or config.seq_len
        config = dataclasses.replace(config, test_sequences=batch_size, seq_len=seq_len)
        _, frames = make_data(config, torch_device)  # held-out digits, the run's test seed
    except (RunError, CheckpointError) as e:
        raise click.ClickException(str(e)) from e
    except ValueError as e:
        raise option_error(str(e)) from e
    if derivation == "prior-wrong-step" and seq_len < 2:
        raise click.BadParameter(
            "--derivation prior-wrong-step differs from the paper only for 2 or more steps",
            param_hint="'--seq-len'",
        )
    click.echo(
        f"model: {source}, {dvip.num_factors} x {dvip.factor_dim} factors, "
        f"{dvip.image_size}x{dvip.image_size} frames, on {torch_device}"
    )
    result = run_check(
        dvip, frames, particles, derivation=derivation, dtype=DTYPES[dtype], seed=seed
    )
    click.echo(result.format())
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(plain(result.to_dict()), indent=2) + "\n")
        except OSError as e:
            raise click.ClickException(f"--json: cannot write {json_path} ({e.strerror})") from e
    if not result.passed:
        ctx.exit(1)
