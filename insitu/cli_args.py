"""Arguments every ``insitu`` command shares: the design point and its ``--set`` overrides."""

from __future__ import annotations

from typing import Annotated

import typer

from . import config

DesignArg = Annotated[
    str,
    typer.Argument(
        help="Preset name (" + ", ".join(config.list_presets()) + ") or a YAML/TOML file."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field: section.field=value (repeatable)."),
]
