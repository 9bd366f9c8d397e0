"""``dvip data inspect``: what `dvip train --data PATH` would train on."""

from __future__ import annotations

from pathlib import Path

import click

from pyro_dvip.data.video import contact_sheet, inspect_video
from pyro_dvip.data.video_decode import RESIZE_MODES, one_line

POSITIVE = click.IntRange(min=1)
SHEET_NAME = "contact_sheet.png"


def _option_error(message: str) -> click.ClickException:
    """The library's ``'option: problem'`` as a Click error naming the option (``data``: PATH)."""
    name, sep, problem = message.partition(": ")
    if sep and name == "data":
        return click.BadParameter(problem, param_hint="'PATH'")
    if sep and " " not in name:
        return click.BadParameter(problem, param_hint=f"'--{name.replace('_', '-')}'")
    return click.ClickException(message)


@click.group()
def data() -> None:
    """Inspect video data for `dvip train --data PATH`."""


@data.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--fps",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="Frames kept per second of video (the paper's rate is 2).",
)
@click.option("--image-size", type=POSITIVE, default=64, show_default=True, help="Frame size.")
@click.option("--seq-len", type=POSITIVE, default=5, show_default=True, help="Frames per sequence.")
@click.option(
    "--stride", type=POSITIVE, help="Frames between sequence starts.  [default: --seq-len]"
)
@click.option(
    "--resize",
    type=click.Choice(RESIZE_MODES),
    default="crop",
    show_default=True,
    help="crop: centre square, then resize; squash: resize the whole frame.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Decoded-frame cache.  [default: $DVIP_CACHE_DIR or ~/.cache/pyro-dvip/video]",
)
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
        report = inspect_video(path, progress=not quiet, **options)
    except ValueError as e:
        raise _option_error(str(e)) from e
    table = report.table().to_string(index=False, na_rep="-", float_format="{:.2f}".format)
    click.echo(table)
    click.echo(report.summary())
    try:
        report.check_usable()
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    try:
        out.mkdir(parents=True, exist_ok=True)
        shown = contact_sheet(report, out / SHEET_NAME)
    except OSError as e:
        raise click.ClickException(f"out: cannot write {out / SHEET_NAME}: {one_line(e)}") from e
    click.echo(f"contact sheet: {out / SHEET_NAME} (rows: {', '.join(shown)})")
