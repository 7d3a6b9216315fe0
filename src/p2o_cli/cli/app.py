"""The ``p2o`` typer application and its global options."""

from __future__ import annotations

import os
from dataclasses import dataclass

import typer

from ..config import Config, option
from .options import command_callback

app = typer.Typer(
    name="p2o",
    help="P²O: joint policy and prompt optimization for RL on reasoning LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's help renderer alone costs a quarter of a second at every start.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class GlobalOptions(Config):
    version: bool = option(False, help="Print p2o's version and exit.")
    debug: bool = option(False, help="Show full tracebacks (the same as P2O_DEBUG=1).")


@command_callback(app, GlobalOptions)
def global_options(opts: GlobalOptions, context: typer.Context) -> None:
    if opts.version:
        from importlib.metadata import version

        typer.echo(f"p2o {version('p2o-cli')}")
        raise typer.Exit(0)
    if opts.debug:
        os.environ["P2O_DEBUG"] = "1"
    if context.invoked_subcommand is None:  # `p2o --debug` alone: nothing to run
        typer.echo(context.get_help())
        raise typer.Exit(0)
