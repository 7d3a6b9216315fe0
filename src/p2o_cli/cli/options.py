"""Typer options generated from config dataclasses: the only place a flag is declared.

``@command(app, "name", JobConfig)`` registers a handler that receives one resolved config
object. Each option of the job's tree becomes ``--name`` (and ``--alias`` for its TRL/verl
names) with its type, help, default and panel; every command also takes ``--config FILE``.
Values are layered by :func:`p2o_cli.config.resolve`: the job's defaults, then ``base`` (e.g. a
run directory's saved config), then the config file, then the flags given.

``--help`` is plain click output (rich's renderer costs a quarter of a second at every start),
grouped into panels by the config section each option belongs to.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
import typer.core

from ..config import Spec, aliases_of, base_type, option_specs, resolve
from ._errors import reported_errors

if TYPE_CHECKING:  # annotations only: typer carries its own click, and importing click costs a start
    import click

Handler = Callable[[Any], None]
BaseValues = Callable[[Mapping[str, Any]], Mapping[str, Any]]
# The option names the user set for the command now running (flags, environment variables, --config).
_GIVEN: ContextVar[frozenset[str]] = ContextVar("given", default=frozenset())
# Every registered command: (typer app name, command name) -> (job config, base layer).
COMMANDS: dict[tuple[str, str], tuple[type, BaseValues | None]] = {}
OPTIONS_PANEL = "Options"
# Options naming a registry's entry, by name: their names are read (installed packages' entry
# points, some milliseconds) only when --help shows them, not at every start.
_LISTED: dict[str, Spec] = {}


def was_given(name: str) -> bool:
    """Whether the running command's option ``name`` was set by the user, not left at its default."""
    return name in _GIVEN.get()


# ---------------------------------------------------------------- what --help says


def default_text(spec: Spec, specs: Mapping[str, tuple[Spec, ...]]) -> str | None:
    """The default as ``--help`` and the option reference show it (None: required, no default)."""
    meta = spec.meta
    target = meta.get("follows")
    if target in specs:
        scale = meta.get("scale", 1.0)
        return specs[target][0].flag if scale == 1.0 else f"{scale:g} × {specs[target][0].flag}"
    value = spec.default
    if meta.get("required"):
        return None
    if value is None or value == [] or value == "":
        return meta.get("unset") or ("none" if value is None else repr(value))
    return shown_value(value)


def shown_value(value: Any) -> str:
    """A value as --help writes it: on/off for switches, floats in %g, lists joined."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def help_text(spec: Spec, specs: Mapping[str, tuple[Spec, ...]]) -> str:
    """The option's help, then ``[env var: …; default: …]`` (or ``[required]``)."""
    extra = [f"env var: {spec.meta['envvar']}"] if spec.meta.get("envvar") else []
    default = default_text(spec, specs)
    extra.append("required" if default is None else f"default: {default}")
    return f"{spec.meta['help']}  [{'; '.join(extra)}]"


def choices_of(spec: Spec) -> tuple[str, ...] | None:
    """The values the option takes, where there is a fixed list (declared choices, a registry's names)."""
    registry = spec.meta.get("registry")
    return tuple(registry.names()) if registry is not None else spec.meta.get("choices")


def metavar(spec: Spec) -> str:
    if spec.meta.get("metavar"):
        return spec.meta["metavar"]
    choices = choices_of(spec)
    if choices:
        return "[" + "|".join(choices) + "]"
    tp, _ = base_type(spec.type)
    return {int: "INT", float: "FLOAT"}.get(tp, "TEXT")


def flags(spec: Spec) -> list[str]:
    """The option's declarations for click: ``--name`` and its aliases, or a ``--x/--no-x`` pair."""
    tp, _ = base_type(spec.type)
    if tp is bool:
        positive = spec.name.removeprefix("no_").replace("_", "-")
        return [f"--no-{positive}/--{positive}" if spec.name.startswith("no_") else f"{spec.flag}/--no-{positive}"]
    return [spec.flag, *alias_flags(spec)]


def alias_flags(spec: Spec) -> list[str]:
    return ["--" + alias.replace("_", "-") for alias in aliases_of(spec.name)]


# ---------------------------------------------------------------- typer parameters


def typer_parameter(spec: Spec, specs: Mapping[str, tuple[Spec, ...]], panel: str) -> inspect.Parameter:
    """One keyword parameter whose annotation typer turns into the option (default None = not given)."""
    tp, _ = base_type(spec.type)
    meta = spec.meta
    if meta.get("argument"):
        info = typer.Argument(help=meta["help"], show_default=False, metavar=meta.get("metavar"))
    else:
        if meta.get("registry") is not None:
            _LISTED[spec.name] = spec  # its metavar lists the registry's names when help is shown
        info = typer.Option(*flags(spec), help=help_text(spec, specs), show_default=False, envvar=meta.get("envvar"),
                            show_envvar=False, rich_help_panel=spec.panel or panel,
                            metavar=None if tp is bool else "NAME" if spec.name in _LISTED else metavar(spec))
    # None means "not given", so a value can come from the layers below the flags (see resolve).
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[tp], info])  # noqa: UP045 - typer reads Optional


CONTEXT = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)


def given_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values the user gave (flag or environment variable): typer leaves the others None."""
    return {k: v for k, v in values.items() if v is not None}


def job_panel(job: type) -> str:
    return getattr(job, "PANEL", None) or OPTIONS_PANEL


def typer_parameters(job: type) -> list[inspect.Parameter]:
    panel = job_panel(job)
    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--config", metavar="FILE", rich_help_panel=panel,
                     help="TOML (or YAML) file of option values; flags override it.")])
    all_specs = option_specs(job)
    specs = [specs[0] for specs in all_specs.values()]
    arguments = [typer_parameter(s, all_specs, panel) for s in specs if s.meta.get("argument")]
    options = [typer_parameter(s, all_specs, panel) for s in specs if not s.meta.get("argument")]
    return [CONTEXT, *arguments, config, *options]


class PanelCommand(typer.core.TyperCommand):
    """A command whose ``--help`` lists its options in panels (one per config section), in plain text."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        arguments: list[tuple[str, str]] = []
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if param.name in _LISTED:
                param.metavar = metavar(_LISTED[param.name])
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            else:  # --help has no panel: it joins the first
                panel = getattr(param, "rich_help_panel", None) or next(iter(panels), OPTIONS_PANEL)
                panels.setdefault(panel, []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for panel, records in panels.items():
            with formatter.section(panel):
                formatter.write_dl(records)


def _callback(handler: Handler, job: type, base: BaseValues | None) -> Callable[..., None]:
    def callback(ctx: typer.Context, **values: Any) -> None:
        from ..monitor.progress import setup_logging

        setup_logging()  # timestamped log lines (reflector retries and give-ups) on stderr
        given = given_values(values)
        with reported_errors():
            config_file = given.pop("config", None)
            cfg, explicit = resolve(job, given, config_file, base)
            _GIVEN.set(explicit)
            handler(cfg)

    callback.__signature__ = inspect.Signature(typer_parameters(job))  # type: ignore[attr-defined]
    callback.__doc__ = handler.__doc__
    callback.__name__ = handler.__name__
    return callback


def command(app: typer.Typer, name: str, job: type, *, base: BaseValues | None = None) -> Callable[[Handler], Handler]:
    """Register ``handler(config)`` as ``p2o NAME`` with the options of ``job``."""

    def register(handler: Handler) -> Handler:
        app.command(name, cls=PanelCommand)(_callback(handler, job, base))
        COMMANDS[(app.info.name or "", name)] = (job, base)
        return handler

    return register


def command_callback(app: typer.Typer, job: type) -> Callable[[Callable[[Any, typer.Context], None]], Any]:
    """Register ``handler(config, context)`` as the app's own options (before any command name)."""

    def register(handler: Callable[[Any, typer.Context], None]) -> Any:
        def callback(ctx: typer.Context, **values: Any) -> None:
            with reported_errors():
                handler(resolve(job, given_values(values))[0], ctx)

        params = [p for p in typer_parameters(job) if p.name != "config"]
        callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        callback.__doc__ = handler.__doc__
        app.callback(invoke_without_command=True)(callback)
        COMMANDS[(app.info.name or "", "")] = (job, None)
        return handler

    return register


def options_markdown(job: type) -> str:
    """A markdown table of ``job``'s options (docs/configuration.md's option reference is this table)."""
    specs = option_specs(job)
    rows = ["| option | section | default | meaning |", "|---|---|---|---|"]
    for specs_of in specs.values():
        spec = specs_of[0]
        where = ", ".join(sorted({s.path[0] if s.path else "run" for s in specs_of}))
        option = ", ".join(f"`{flag}`" for flag in (spec.flag, *alias_flags(spec)))
        default = default_text(spec, specs)
        text = spec.meta["help"]
        choices = choices_of(spec)
        if spec.meta.get("registry") is not None and choices:
            text += f" Registered: {', '.join(choices)}."
        described = spec.meta.get("follows") in specs or spec.default in (None, "", [])  # words, not a value
        cells = [option, where, "" if default is None else default if described else f"`{default}`", text]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"
