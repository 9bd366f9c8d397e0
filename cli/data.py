"""``dvip data inspect``: what `dvip train --data PATH` would train on."""

from __future__ import annotations

from pathlib import Path

import click

from pyro_dvip.config import FIELDS, make_config
from pyro_dvip.data.video import contact_sheet, inspect_video
from pyro_dvip.data.video_decode import error_text

from .options import config_option, option_error

SHEET_NAME = "contact_sheet.png"
# The `dvip train` options that decide which frames are kept and how they are cut.
VIDEO_OPTIONS = ("fps", "image_size", "seq_len", "stride", "resize", "cache_dir")


@click.group()
def data() -> None:
    """Inspect video data for `dvip train --data PATH`."""


@data.command(params=[config_option(FIELDS[name]) for name in VIDEO_OPTIONS])
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help=f"Folder for {SHEET_NAME}.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def inspect(path: Path, out: Path, quiet: bool, **options) -> None:
    """Decode (or read from the cache) every clip under PATH and report per clip: duration,
    source fps, frames kept, sequences, what was skipped and why; write a contact sheet.

    PATH is a video file, a folder of video files (mp4, avi, mov, mkv, webm; searched
    recursively) or a folder with one subfolder of frame images (png, jpg) per clip.

    \b
    Examples:
      dvip data inspect street.mp4
      dvip data inspect videos/ --fps 4 --image-size 32 --out runs/data
    """
    try:
        config = make_config(**options)  # dvip train's defaults and checks
        settings = {name: getattr(config, name) for name in VIDEO_OPTIONS}
        report = inspect_video(path, progress=not quiet, **settings)
    except ValueError as e:
        name, _, problem = str(e).partition(": ")
        if name == "data":  # the library names PATH as dvip train names it, --data
            raise click.BadParameter(problem, param_hint="'PATH'") from e
        raise option_error(str(e)) from e
    click.echo(report.table().to_string(index=False, na_rep="-", float_format="{:.2f}".format))
    click.echo(report.summary())
    try:
        report.check_usable()  # before making --out
        out.mkdir(parents=True, exist_ok=True)
        shown = contact_sheet(report, out / SHEET_NAME)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"out: cannot write {out / SHEET_NAME}: {error_text(e)}") from e
    click.echo(f"contact sheet: {out / SHEET_NAME} (rows: {', '.join(shown)})")
