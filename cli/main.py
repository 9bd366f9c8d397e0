"""``dvip``: the command-line entry point. Commands only parse, validate and call the library."""

from __future__ import annotations

import logging
import traceback

import click

from pyro_dvip import distributed

from .check_elbo import check_elbo
from .data import data
from .evaluate import compare, evaluate
from .train import presets, train


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="pyro-dvip")
def cli() -> None:
    """Disentangle video into independently predictable factors (Whitney & Fergus).

    Start with `dvip train --preset cpu-demo`, a few minutes on a laptop CPU.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")


cli.add_command(train)
cli.add_command(presets)
cli.add_command(check_elbo)
cli.add_command(evaluate)
cli.add_command(compare)
cli.add_command(data)


def main() -> None:
    if not distributed.is_worker():
        cli()
        return
    # A torchrun worker leaves without interpreter shutdown (see distributed.exit_worker).
    try:
        cli()
        status = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            click.echo(e.code, err=True)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    distributed.exit_worker(status)
