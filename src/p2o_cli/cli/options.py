"""Typer options generated from config dataclasses: the only place a flag is declared.

``@command(app, "name", JobConfig)`` registers a handler that receives one resolved config
object. Each option of the job's tree becomes ``--name`` with its type, help and default; every
command also takes ``--config FILE``. Values are layered: the job's defaults, then ``base`` (e.g.
a run directory's saved config), then the config file, then the flags given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Optional

import typer

from ..config import ALIASES, Spec, base_type, build, option_specs, read_config_file
from ._errors import reported_errors

Handler = Callable[[Any], None]
# The option names the user gave to the command now running (flags or environment variables).
_GIVEN: ContextVar[frozenset[str]] = ContextVar("given", default=frozenset())


def was_given(name: str) -> bool:
    """Whether the running command's option ``name`` was given, not left at its default."""
    return name in _GIVEN.get()
BaseValues = Callable[[Mapping[str, Any]], Mapping[str, Any]]
_ALIAS_OF = {target: alias for alias, target in ALIASES.items()}


def help_text(spec: Spec) -> str:
    text = spec.meta["help"]
    if spec.name in _ALIAS_OF:
        text += f" (config alias: {_ALIAS_OF[spec.name]})"
    return text


def shown_default(spec: Spec) -> str | bool:
    if spec.default in (None, "", []) or spec.meta.get("required"):
        return False
    if isinstance(spec.default, bool):
        return "on" if spec.default else "off"
    return str(spec.default)


def typer_parameter(spec: Spec) -> inspect.Parameter:
    """One keyword parameter whose annotation typer turns into the option (default None = not given)."""
    tp, _ = base_type(spec.type)
    meta = spec.meta
    if meta.get("argument"):
        info = typer.Argument(help=help_text(spec), show_default=False, metavar=meta.get("metavar"))
    else:
        decls = [spec.flag]
        if tp is bool:
            positive = spec.name.removeprefix("no_").replace("_", "-")
            decls = [f"--no-{positive}/--{positive}" if spec.name.startswith("no_") else f"{spec.flag}/--no-{positive}"]
        info = typer.Option(*decls, help=help_text(spec), show_default=shown_default(spec),
                            envvar=meta.get("envvar"), metavar=meta.get("metavar"))
    # None means "not given", so a value can come from the layers below the flags (see resolve).
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[tp], info])  # noqa: UP045 - typer reads Optional


CONTEXT = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)


def given_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values the user gave (flag or environment variable): typer leaves the others None."""
    return {k: v for k, v in values.items() if v is not None}


def typer_parameters(job: type) -> list[inspect.Parameter]:
    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--config", metavar="FILE", help="TOML (or YAML) file of option values; flags override it.")])
    specs = [specs[0] for specs in option_specs(job).values()]
    arguments = [typer_parameter(s) for s in specs if s.meta.get("argument")]
    return [CONTEXT, *arguments, config, *(typer_parameter(s) for s in specs if not s.meta.get("argument"))]


def resolve(job: type, given: Mapping[str, Any], base: BaseValues | None = None) -> Any:
    """The job's config from its layers: defaults < base < --config file < flags."""
    flags = {k: v for k, v in given.items() if v is not None and k != "config"}
    values: dict[str, Any] = dict(base(flags)) if base else {}
    if given.get("config"):
        values.update(read_config_file(given["config"], job))
    values.update(flags)
    return build(job, values)


def _callback(handler: Handler, job: type, base: BaseValues | None) -> Callable[..., None]:
    def callback(ctx: typer.Context, **values: Any) -> None:
        from ..monitor.progress import setup_logging

        setup_logging()  # timestamped log lines (reflector retries and give-ups) on stderr
        given = given_values(values)
        _GIVEN.set(frozenset(given))
        with reported_errors():
            handler(resolve(job, given, base))

    callback.__signature__ = inspect.Signature(typer_parameters(job))  # type: ignore[attr-defined]
    callback.__doc__ = handler.__doc__
    callback.__name__ = handler.__name__
    return callback


def command(app: typer.Typer, name: str, job: type, *, base: BaseValues | None = None) -> Callable[[Handler], Handler]:
    """Register ``handler(config)`` as ``p2o NAME`` with the options of ``job``."""

    def register(handler: Handler) -> Handler:
        app.command(name)(_callback(handler, job, base))
        return handler

    return register


def command_callback(app: typer.Typer, job: type) -> Callable[[Callable[[Any, typer.Context], None]], Any]:
    """Register ``handler(config, context)`` as the app's own options (before any command name)."""

    def register(handler: Callable[[Any, typer.Context], None]) -> Any:
        def callback(ctx: typer.Context, **values: Any) -> None:
            with reported_errors():
                handler(resolve(job, given_values(values)), ctx)

        params = [p for p in typer_parameters(job) if p.name != "config"]
        callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        callback.__doc__ = handler.__doc__
        app.callback(invoke_without_command=True)(callback)
        return handler

    return register


def options_markdown(job: type) -> str:
    """A markdown table of ``job``'s options by section (docs/configuration.md's option reference is this table)."""
    rows = ["| option | section | default | meaning |", "|---|---|---|---|"]
    for name, specs in option_specs(job).items():
        spec = specs[0]
        where = ", ".join(sorted({s.path[0] if s.path else "run" for s in specs}))
        default = "" if spec.default in (None, "", []) or spec.meta.get("required") else f"`{spec.default}`"
        text = spec.meta["help"].replace("|", "\\|")
        if name in _ALIAS_OF:
            text += f" Config alias: `{_ALIAS_OF[name]}`."
        rows.append(f"| `{spec.flag}` | {where} | {default} | {text} |")
    return "\n".join(rows) + "\n"

