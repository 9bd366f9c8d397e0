"""Click options made from :class:`~pyro_dvip.config.TrainConfig`'s fields: each option's
name, type, help, choices and default text are those the field declares, so they live in one
place. Values are left unset (None) here and checked by the configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from click.core import ParameterSource

from pyro_dvip.config import FIELDS, RETIRED, RETIRED_NOTE, TrainConfig


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def off_switch(name: str) -> str:
    """The option that turns a boolean field off: its declared ``flag``, else ``--no-NAME``."""
    return "--" + (FIELDS[name].metadata["flag"] or f"no-{name.replace('_', '-')}")


def help_text(meta: dict, default) -> str:
    if meta["default_text"] is not None:
        shown = meta["default_text"]
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    else:
        shown = f"{default:g}" if isinstance(default, float) else default
    return f"{meta['help']}  [default: {shown}]"


def config_option(field: dataclasses.Field) -> click.Option:
    """The ``dvip train`` option of one configuration field."""
    meta, default = field.metadata, field.default
    if field.type == "bool":
        switches = f"{flag(field.name)}/{off_switch(field.name)}"
        return click.Option([switches, field.name], default=None, help=help_text(meta, default))
    kind = int if field.type.startswith("int") else float if "float" in field.type else str
    choices = meta["choices"]
    metavar = meta["metavar"] or ("[" + "|".join(map(str, choices)) + "]" if choices else None)
    return click.Option(
        [flag(field.name), field.name], type=kind, metavar=metavar, help=help_text(meta, default)
    )


def retired_option(name: str) -> click.Option:
    """A hidden option that passes a retired option's value on, for the configuration to
    accept at its neutral value or refuse in one line."""
    kind = RETIRED[name][2]
    return click.Option([flag(name), name], type=kind, hidden=True, help=RETIRED_NOTE)


POSITIVE = click.IntRange(min=1)
RUN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def shown(*names: str, default, help: str, **kwargs):
    """A Click option whose help ends with its default."""
    return click.option(*names, default=default, show_default=True, help=help, **kwargs)


def config_options(groups: tuple[str, ...] | None = None, also: tuple[str, ...] = ()):
    """Attach the options of the configuration fields in ``groups`` (all when None) and those
    named in ``also``, and the retired ones, hidden, to a command."""

    def decorate(command: click.Command) -> click.Command:
        options = [
            config_option(field) for field in dataclasses.fields(TrainConfig)
            if field.name in FIELDS
            and (groups is None or field.metadata["group"] in groups or field.name in also)
        ]  # fmt: skip
        options += [retired_option(name) for name in RETIRED]
        names = [param.name for param in command.params]
        at = names.index("preset") + 1 if "preset" in names else len(names)  # after --preset
        command.params[at:at] = options
        return command

    return decorate


def option_error(message: str) -> click.BadParameter:
    """Turn the library's ``'field: problem'`` into a Click error naming the option."""
    name, sep, problem = message.partition(": ")
    if sep and name in {*FIELDS, *RETIRED, "preset", "until"}:
        return click.BadParameter(problem, param_hint=f"'{flag(name)}'")
    return click.BadParameter(message)


def given(ctx: click.Context, options: dict) -> set[str]:
    """The options the user gave on the command line."""
    return {n for n in options if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}
